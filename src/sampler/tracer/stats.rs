//! The tracer's counters, for metrics and the exit line.

/// Counters, for metrics and the exit line (see `ACK_DEADLINE_NS` in
/// the tracer for the ACK outcomes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TracerStats {
    /// Messages seen (sampling on).
    pub messages: u64,
    /// Recorded by their kind's rate.
    pub recorded: u64,
    /// Recorded by tail bias.
    pub tail_bias: u64,
    /// Not recorded (rate).
    pub skipped: u64,
    /// Lost because the ring was full.
    pub dropped_ring_full: u64,
    /// Current rate halving (0: configured rates).
    pub shift: u32,
    pub injected_stalls: u64,
    pub injected_slow_handlers: u64,
    pub injected_fault_storms: u64,
    /// Records completed by their reply's ACK (not counting `spurious`).
    pub acked: u64,
    /// Records whose reply's ACK had not come by [`super::ACK_DEADLINE_NS`].
    pub ack_late: u64,
    /// Records pushed without their ACK: the held pool was full.
    pub ack_untracked: u64,
    /// Records completed by their reply's ACK after a retransmission found
    /// spurious.
    pub spurious: u64,
    /// Records held for an ACK now.
    pub ack_held: u64,
}
