//! What an inbound ACK tells loss recovery: copies it frees, the RTT sample
//! it gives, SACK blocks that mark copies delivered and find losses (RACK),
//! and D-SACK blocks that show a retransmission was not needed.

use super::flow::{Kind, Slot};
use super::{Recovery, DELAYED_ACK_NS, MAX_ACK_DELAY_NS, NIL};

use crate::stack::frame::{flow_key, tcp_flags, FrameKey};
use crate::stack::seq::{seq_le, seq_lt};

impl Recovery {
    /// A frame from the peer, as `frame::classify` read it, arrived at `at`
    /// (before smoltcp sees it).
    pub fn on_ingress(&mut self, t: &FrameKey, at: u64) {
        if self.index.is_empty() {
            return;
        }
        let Some((ip, rp, lp)) = t.tuple else { return };
        let Some(&i) = self.index.get(&flow_key(ip, rp, lp)) else { return };
        if t.flags & tcp_flags::ACK == 0 || t.flags & tcp_flags::RST != 0 {
            return;
        }
        let (ack, fin, syn) = (t.ack, t.flags & tcp_flags::FIN != 0, t.flags & tcp_flags::SYN != 0);
        let f = &mut self.flows[i];
        if f.syn.is_none() && (seq_lt(ack, f.snd_una) || seq_lt(f.snd_max, ack)) {
            // Below SND.UNA smoltcp drops the whole segment; above what was
            // sent the guard does. Neither tells recovery anything.
            return;
        }
        f.last_active = at;
        f.zero_window = t.window == 0 && !syn;
        if let Some(s) = f.syn {
            if ack == s.iss.wrapping_add(1) {
                if !s.again {
                    f.sample(at.saturating_sub(s.sent));
                }
                f.syn = None;
                f.snd_una = ack;
            }
        }
        let f = &mut self.flows[i];
        let mut delivered = 0u64;
        let mut sacked_now = false;
        let mut sample = None;
        let mut progressed = false;
        if seq_lt(f.snd_una, ack) && seq_le(ack, f.snd_max) {
            progressed = true;
            let mut s = f.head;
            let mut freed = 0u16;
            while s != NIL {
                let sl = self.slots[s as usize];
                if !seq_le(sl.end, ack) {
                    break;
                }
                if sl.tx == 1 {
                    sample = Some(at.saturating_sub(sl.first_tx));
                } else if at <= sl.last_tx {
                    // The ACK arrived before the copy left: it answers the
                    // original, and the copy was not needed.
                    self.stats.spurious += 1;
                    self.flows[i].spurious = self.flows[i].spurious.wrapping_add(1);
                    self.learn(i, sl.seq, sl.end);
                }
                if unambiguous(&sl) {
                    delivered = delivered.max(sl.last_tx);
                }
                let next = sl.next;
                self.release(s);
                freed += 1;
                s = next;
            }
            let f = &mut self.flows[i];
            f.head = s;
            if s == NIL {
                f.tail = NIL;
            }
            f.count -= freed;
            f.snd_una = ack;
            f.backoff = 0;
            f.dup_acks = 0;
        } else if ack == f.snd_una && t.payload == 0 && !fin && !syn && f.count > 0 {
            f.dup_acks = f.dup_acks.saturating_add(1);
        }
        // SACK blocks: D-SACK (below the cumulative ACK, or the first block
        // inside the second) reports a duplicate; the rest mark copies
        // delivered, if they lie in what is outstanding, [SND.UNA, SND.MAX]
        // (RFC 2018, RFC 6675): a block past what was sent, or a wide one
        // wrapping round, marks nothing.
        let (una, max) = (self.flows[i].snd_una, self.flows[i].snd_max);
        for (n, b) in t.sack.iter().enumerate() {
            let Some((l, r)) = *b else { continue };
            if !seq_lt(l, r) {
                continue;
            }
            let dsack = seq_le(r, ack) || (n == 0 && t.sack[1].is_some_and(|(l2, r2)| seq_le(l2, l) && seq_le(r, r2)));
            if dsack {
                self.dsack(i, l, r);
                continue;
            }
            if !(seq_le(una, l) && seq_le(r, max)) {
                continue;
            }
            // Copies are in sequence order: stop past the block.
            let mut s = self.flows[i].head;
            while s != NIL {
                let sl = &mut self.slots[s as usize];
                if !seq_lt(sl.seq, r) {
                    break;
                }
                if !sl.sacked && seq_le(l, sl.seq) && seq_le(sl.end, r) {
                    sl.sacked = true;
                    sacked_now = true;
                    if unambiguous(sl) {
                        delivered = delivered.max(sl.last_tx);
                    }
                }
                s = sl.next;
            }
        }
        if let Some(rtt) = sample {
            self.flows[i].sample(rtt);
        }
        // RACK: a copy sent before a delivered one, and older than the
        // minimum RTT plus the reordering window, is lost. Only a SACK can
        // show that: the copies left are all above the cumulative ACK, and
        // first transmissions go out in sequence order.
        if sacked_now && delivered > 0 && self.flows[i].count > 0 {
            let f = &self.flows[i];
            let (wait, reo) = (f.min_rtt + f.reo_wnd(), f.reo_wnd());
            let mut s = f.head;
            let mut any = false;
            let mut earliest = u64::MAX;
            while s != NIL {
                let sl = &mut self.slots[s as usize];
                if sl.tx == 1 && sl.last_tx + reo > delivered {
                    // This one and every first transmission after it left
                    // after the delivered copy.
                    break;
                }
                if !sl.sacked && !sl.lost && sl.last_tx + reo <= delivered {
                    if at >= sl.last_tx + wait {
                        sl.lost = true;
                        any = true;
                    } else {
                        earliest = earliest.min(sl.last_tx + wait);
                    }
                }
                s = sl.next;
            }
            if any && !self.flows[i].lost_pending {
                self.flows[i].lost_pending = true;
                self.lost.push(i);
            }
            if earliest != u64::MAX {
                self.arm(i, earliest);
            }
        }
        if progressed {
            self.arm_head(i);
        }
    }

    /// The peer reported `[l, r)` twice (D-SACK): if that was our last
    /// copy, it was spurious.
    /// Only a block within that copy counts: a duplicate the peer reports
    /// is bytes it received twice, and our copy was one of the two.
    fn dsack(&mut self, i: usize, l: u32, r: u32) {
        let within = self.flows[i].last_retx.is_some_and(|x| seq_le(x.seq, l) && seq_le(r, x.end));
        if within && self.learn(i, l, r) {
            self.stats.spurious += 1;
            self.flows[i].spurious = self.flows[i].spurious.wrapping_add(1);
        }
    }

    /// Our last retransmission on flow `i`, if it overlaps `[l, r)`, was
    /// not needed: learn from it (once). True if it overlapped.
    fn learn(&mut self, i: usize, l: u32, r: u32) -> bool {
        let f = &mut self.flows[i];
        let Some(x) = f.last_retx else { return false };
        if !(seq_lt(l, x.end) && seq_lt(x.seq, r)) {
            return false;
        }
        f.last_retx = None;
        match x.kind {
            // The peer had the original and holds its ACKs: for as long as
            // a delayed-ACK timer (Linux: 40 ms at least), and at least four
            // times what this copy waited. One surprise per flow, not a
            // doubling search.
            Kind::Timer => {
                let held = x.at.saturating_sub(x.first_tx);
                f.hold = f.hold.max(4 * held).clamp(DELAYED_ACK_NS, MAX_ACK_DELAY_NS);
                f.hold_learned = true;
                f.backoff = 0;
            }
            // The original was reordered, not lost: widen the window.
            Kind::Sack => f.reo_quarters = (f.reo_quarters + 1).min(16),
        }
        true
    }
}

/// May a delivered copy stand for "sent at `last_tx`" in RACK (RFC 8985
/// section 6.2 step 2)? Only one sent once: an ACK for a retransmitted one
/// may answer an earlier transmission. RFC 8985 accepts it when the ACK
/// comes later than the minimum RTT after the copy; without timestamps that
/// is not enough under load: with a queue on the path, the ACK of the
/// original arrives long after the minimum RTT, and taking it for the copy's
/// marks every segment sent in between lost (a cascade of spurious copies,
/// seen at 800k orders/s on the lab). A lost retransmission is left to the
/// timer.
fn unambiguous(sl: &Slot) -> bool {
    sl.tx == 1
}
