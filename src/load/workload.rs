//! What one application's load looks like, behind a trait: the requests it
//! sends, and how it checks the replies. The generator (`mod.rs`) owns the
//! connections, the schedule and the clock; a workload owns the protocol.

use hdrhistogram::Histogram;

/// Tallies kept during the run.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub answered: u64,
    pub rejected: u64,
    pub out_of_sequence: u64,
    pub unexpected: u64,
    pub corrupted: u64,
    pub disconnected: u64,
    pub overruns: u64,
    /// Sessions the gateway logged out because it was shutting down.
    pub shutdown_logouts: u64,
    /// Requests still unanswered on a session when its shutdown Logout
    /// came: sent after the gateway stopped reading, not failures.
    pub after_shutdown: u64,
}

/// Where a workload reports what the replies it parsed were.
pub struct Replies<'a> {
    pub(super) tally: &'a mut Tally,
    pub(super) hist: &'a mut Histogram<u64>,
    /// When the bytes were read (monotonic ns).
    pub(super) now: u64,
    /// Record round trips (false while logging on).
    pub(super) record: bool,
}

impl Replies<'_> {
    /// The reply to a request sent (scheduled) at `ts`.
    pub fn answered(&mut self, ts: u64, rejected: bool) {
        self.tally.answered += 1;
        if rejected {
            self.tally.rejected += 1;
        }
        if self.record {
            self.hist.saturating_record(self.now.saturating_sub(ts).max(1));
        }
    }

    /// A reply that matches no outstanding request.
    pub fn unexpected(&mut self) {
        self.tally.unexpected += 1;
    }

    /// A reply whose contents are wrong.
    pub fn corrupted(&mut self) {
        self.tally.corrupted += 1;
    }

    /// A reply out of the server's sequence.
    pub fn out_of_sequence(&mut self) {
        self.tally.out_of_sequence += 1;
    }

    /// The server logged the session out because it is shutting down;
    /// `unanswered` requests were still waiting (they will not be answered,
    /// and are no failure).
    pub fn shutdown(&mut self, unanswered: usize) {
        self.tally.shutdown_logouts += 1;
        self.tally.after_shutdown += unanswered as u64;
    }
}

/// One application's requests and replies. Connections are numbered
/// `0..conns` in the order they were opened.
pub trait Workload {
    /// Connection `ci` was opened: append what it sends first (a logon).
    fn open(&mut self, ci: usize, tx: &mut Vec<u8>);
    /// May connection `ci` send requests (logged on)?
    fn ready(&self, ci: usize) -> bool;
    /// Append one request stamped `ts` (its scheduled send time).
    fn request(&mut self, ci: usize, ts: u64, tx: &mut Vec<u8>);
    /// Append a keep-alive for a quiet connection, if the protocol has one.
    fn heartbeat(&mut self, _ci: usize, _tx: &mut Vec<u8>) -> bool {
        false
    }
    /// Append the polite goodbye (a logout), if the protocol has one; the
    /// server then closes the connection.
    fn goodbye(&mut self, _ci: usize, _tx: &mut Vec<u8>) -> bool {
        false
    }
    /// Consume the complete replies at the front of `buf`, reporting each;
    /// returns the bytes consumed, or a framing error (the connection is
    /// then given up).
    fn replies(&mut self, ci: usize, buf: &[u8], seen: &mut Replies<'_>) -> Result<usize, String>;
    /// Requests on `ci` still waiting for their reply.
    fn outstanding(&self, ci: usize) -> usize;
    /// Has the server ended session `ci` (a shutdown Logout)? Nothing more
    /// is sent on it.
    fn ended(&self, _ci: usize) -> bool {
        false
    }
    /// The longest reply, in bytes (sizes the receive buffers).
    fn max_reply(&self) -> usize;
    /// What the answers were, for a workload with an order lifecycle.
    fn lifecycle(&self) -> Option<super::orders::Lifecycle> {
        None
    }
}
