//! One flow's recovery state: the records of its copies in flight, its
//! handshake, its RTT estimates (RFC 6298, in ns), the peer's ACK delay and
//! hold, and the timeout they give.

use super::{
    DELAYED_ACK_NS, FIRST_HOLD_NS, INITIAL_TIMEOUT_NS, MAX_ACK_DELAY_NS, MAX_TIMEOUT_NS, NIL, PROMPT_SAMPLES,
    PROMPT_SLACK_NS,
};

/// Why a segment went out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Our timer: the ACK was overdue.
    Timer,
    /// Our SACK-driven detection: a later segment arrived.
    Sack,
}

/// One copied segment in flight.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) next: u32,
    pub(super) seq: u32,
    /// `seq` + payload + FIN.
    pub(super) end: u32,
    pub(super) first_tx: u64,
    pub(super) last_tx: u64,
    /// Transmissions so far (smoltcp's and ours).
    pub(super) tx: u8,
    pub(super) sacked: bool,
    pub(super) lost: bool,
    pub(super) len: u16,
    /// Carries our FIN.
    pub(super) fin: bool,
}

impl Slot {
    /// A slot before its first use.
    pub(super) const EMPTY: Slot = Slot {
        next: u32::MAX,
        seq: 0,
        end: 0,
        first_tx: 0,
        last_tx: 0,
        tx: 0,
        sacked: false,
        lost: false,
        len: 0,
        fin: false,
    };
}

/// A handshake in flight: our SYN or SYN-ACK.
#[derive(Debug, Clone, Copy)]
pub(super) struct Syn {
    pub(super) iss: u32,
    pub(super) sent: u64,
    pub(super) again: bool,
}

/// Our last retransmission on a flow, to judge it spurious later.
#[derive(Debug, Clone, Copy)]
pub(super) struct LastRetx {
    pub(super) seq: u32,
    pub(super) end: u32,
    pub(super) at: u64,
    pub(super) first_tx: u64,
    pub(super) kind: Kind,
}

#[derive(Debug, Clone)]
pub(super) struct Flow {
    pub(super) key: u64,
    pub(super) gen: u64,
    pub(super) head: u32,
    pub(super) tail: u32,
    pub(super) count: u16,
    pub(super) snd_una: u32,
    pub(super) snd_max: u32,
    pub(super) syn: Option<Syn>,
    /// ACK number and raw window of our latest segment.
    pub(super) ack_out: u32,
    pub(super) win_out: u16,
    pub(super) ack_known: bool,
    pub(super) srtt: u64,
    pub(super) rttvar: u64,
    pub(super) min_rtt: u64,
    pub(super) ack_delay: u64,
    /// How long the peer has been seen to hold an ACK (learned from
    /// spurious timer retransmissions; decays by 1/4096 per RTT sample).
    pub(super) hold: u64,
    /// Consecutive prompt samples (within twice the minimum RTT plus
    /// [`PROMPT_SLACK_NS`]).
    pub(super) prompt: u8,
    /// `hold` came from a spurious retransmission (prompt samples do not
    /// release it; it decays).
    pub(super) hold_learned: bool,
    pub(super) samples: u32,
    /// Reordering window, in quarters of the minimum RTT.
    pub(super) reo_quarters: u8,
    pub(super) backoff: u8,
    /// Deadline the heap holds for this flow (0: none).
    pub(super) armed: u64,
    pub(super) dup_acks: u8,
    pub(super) zero_window: bool,
    pub(super) lost_pending: bool,
    pub(super) last_retx: Option<LastRetx>,
    pub(super) last_active: u64,
    /// Data segments sent again on this flow (smoltcp's and ours).
    pub(super) retransmissions: u32,
    /// Of those, found unnecessary (the peer had the original).
    pub(super) spurious: u32,
}

impl Flow {
    pub(super) fn new(key: u64, gen: u64, now: u64) -> Flow {
        Flow {
            key,
            gen,
            head: NIL,
            tail: NIL,
            count: 0,
            snd_una: 0,
            snd_max: 0,
            syn: None,
            ack_out: 0,
            win_out: 0,
            ack_known: false,
            srtt: 0,
            rttvar: 0,
            min_rtt: 0,
            ack_delay: 0,
            hold: DELAYED_ACK_NS,
            prompt: 0,
            hold_learned: false,
            samples: 0,
            reo_quarters: 1,
            backoff: 0,
            armed: 0,
            dup_acks: 0,
            zero_window: false,
            lost_pending: false,
            last_retx: None,
            last_active: now,
            retransmissions: 0,
            spurious: 0,
        }
    }

    /// How long the oldest segment may go unacknowledged, before backoff.
    pub(super) fn base_timeout(&self, floor: u64) -> u64 {
        if self.samples == 0 {
            return INITIAL_TIMEOUT_NS;
        }
        // Before the first data sample (only the handshake's), the peer's
        // delayed-ACK timer may run its longest: a client busy opening many
        // connections held its first ACKs past 50 ms on the lab.
        let hold = if self.samples <= 1 { self.hold.max(FIRST_HOLD_NS) } else { self.hold };
        (self.srtt + 4 * self.rttvar).max(self.min_rtt + self.ack_delay.max(hold)) + floor
    }

    /// With backoff: the first retransmission waits the base timeout; if
    /// it goes unanswered the peer is silent (stalled, or the path is
    /// down), not missing one segment, so the next waits at least
    /// [`DELAYED_ACK_NS`], and each after that twice as long.
    pub(super) fn timeout(&self, floor: u64) -> u64 {
        let b = self.backoff.min(20);
        let t = self.base_timeout(floor) << b;
        let t = if b == 0 { t } else { t.max(DELAYED_ACK_NS << (b - 1)) };
        t.min(MAX_TIMEOUT_NS)
    }

    pub(super) fn reo_wnd(&self) -> u64 {
        self.min_rtt / 4 * u64::from(self.reo_quarters)
    }

    /// One RTT sample, `rtt` ns.
    pub(super) fn sample(&mut self, rtt: u64) {
        let rtt = rtt.max(1);
        if self.samples == 0 {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
            self.min_rtt = rtt;
        } else {
            let err = self.srtt.abs_diff(rtt);
            self.rttvar = (3 * self.rttvar + err) / 4;
            self.srtt = (7 * self.srtt + rtt) / 8;
            self.min_rtt = self.min_rtt.min(rtt);
            let excess = rtt - self.min_rtt;
            self.ack_delay = if excess >= self.ack_delay {
                excess.min(MAX_ACK_DELAY_NS)
            } else {
                self.ack_delay - (self.ack_delay - excess) / 16
            };
        }
        if self.samples > 0 && rtt <= 2 * self.min_rtt + PROMPT_SLACK_NS {
            self.prompt = self.prompt.saturating_add(1);
            if self.prompt >= PROMPT_SAMPLES && !self.hold_learned {
                // This peer answers at once: no delayed-ACK allowance.
                self.hold = 0;
            }
        } else {
            self.prompt = 0;
        }
        self.hold -= self.hold / 4096;
        self.samples = self.samples.saturating_add(1);
    }
}

/// One flow's estimates, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub srtt_ns: u64,
    pub rttvar_ns: u64,
    pub min_rtt_ns: u64,
    /// How long the peer holds its ACKs beyond the minimum RTT: from RTT
    /// samples, and from retransmissions found spurious.
    pub ack_delay_ns: u64,
    pub hold_ns: u64,
    pub samples: u32,
    /// When the oldest segment in flight is overdue (before backoff).
    pub timeout_ns: u64,
    /// Copies held.
    pub in_flight: u16,
}

/// Minimum, maximum, sum and count of smoothed RTTs (ns).
#[derive(Debug, Clone, Copy)]
pub(super) struct SrttSummary {
    pub(super) min: u64,
    pub(super) max: u64,
    pub(super) sum: u64,
    pub(super) n: u64,
}

impl Default for SrttSummary {
    fn default() -> Self {
        SrttSummary { min: u64::MAX, max: 0, sum: 0, n: 0 }
    }
}

impl SrttSummary {
    pub(super) fn add(&mut self, srtt: u64) {
        self.min = self.min.min(srtt);
        self.max = self.max.max(srtt);
        self.sum += srtt;
        self.n += 1;
    }
}

/// Retransmission counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetxStats {
    /// Ours: the ACK was overdue.
    pub timer: u64,
    /// Ours: a later segment was selectively acknowledged.
    pub sack: u64,
    /// smoltcp's, after its RTO.
    pub rto: u64,
    /// smoltcp's RTO retransmissions of bytes this layer holds copies of:
    /// withheld (the copies have their own schedule).
    pub rto_withheld: u64,
    /// smoltcp's, after three duplicate ACKs.
    pub fast: u64,
    /// Retransmissions found unnecessary.
    pub spurious: u64,
    /// Data segments sent without a copy (flow or pool full).
    pub untracked: u64,
    /// Times the timer heap was full and its stale entries were dropped.
    pub heap_compactions: u64,
    /// Timeouts that found every copy left SACKed yet unacknowledged: the
    /// peer reneged, and they went again.
    pub reneged: u64,
}
