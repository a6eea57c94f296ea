//! Per-message samples for latency attribution.
//!
//! Built: [`ring`], the lock-free single-producer ring a pinned loop writes
//! its samples into, and [`Sample`], the fixed-size record. To come (issue
//! "Tail attribution"): the sampling policy, the reporter thread, metrics and
//! the tail-attribution report that read these records.

pub mod ring;

/// Cause flags a record can carry (bit set in [`Sample::cause`]).
pub mod cause {
    /// The loop iteration that handled the message started late (stall).
    pub const LOOP_STALL: u32 = 1 << 0;
    /// The message waited behind others from the same burst.
    pub const QUEUED_BEHIND_BURST: u32 = 1 << 1;
    /// The segment carrying it was a retransmission.
    pub const RETRANSMIT: u32 = 1 << 2;
    /// The handler took longer than its threshold.
    pub const SLOW_HANDLER: u32 = 1 << 3;
    /// The fill ring ran low while it was in flight.
    pub const FILL_STARVED: u32 = 1 << 4;
}

/// One message's path through the gateway: 128 bytes, two cache lines.
/// Timestamps are monotonic nanoseconds; 0 means "not seen by this backend".
#[repr(C, align(64))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Order id (client order id) or another trace id.
    pub trace_id: u64,
    /// Frame taken off the rx ring (xdp) or bytes read (kernel).
    pub t_rx_frame: u64,
    /// Delivered to the application by the stack.
    pub t_delivered: u64,
    /// Parsed by the protocol codec.
    pub t_parsed: u64,
    /// Handled (reply produced).
    pub t_handled: u64,
    /// Reply queued for TX.
    pub t_tx_queued: u64,
    /// TX completed, where the backend can know it.
    pub t_tx_done: u64,
    /// Event-loop iteration that handled it.
    pub loop_iter: u64,
    pub conn: u32,
    /// Bit set of [`cause`] flags.
    pub cause: u32,
    pub core: u16,
    pub msg_type: u8,
    pub status: u8,
    pub payload_len: u16,
    pub _reserved: u16,
    /// The first 32 bytes of the message.
    pub payload: [u8; 32],
}

const _: () = assert!(std::mem::size_of::<Sample>() == 128);
