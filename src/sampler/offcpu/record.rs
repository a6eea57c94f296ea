//! One interval in which a loop's thread was off its core or interrupted,
//! as bpf/offcpu.bpf.c writes it, and as a record of the sample store
//! (kind [`kind::OFFCPU`]), so that `tailgate report` reads it from the
//! sample log or `/samples` beside the messages it explains.

use crate::sampler::{kind, Sample};

/// What took the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum What {
    /// The scheduler switched the thread out while it could run: another
    /// task ran (the one that ran longest is named).
    Preempted = 1,
    /// The thread slept (a blocking loop's wait for events).
    Blocked = 2,
    /// An interrupt handler ran on the thread's core while it was current.
    Irq = 3,
    /// A softirq ran on the thread's core while it was current.
    Softirq = 4,
    /// The thread took page faults (`page_fault_user`): a burst of them,
    /// each within 100 us of the last.
    Fault = 5,
    /// The hypervisor ran something else: the core's steal time rose
    /// (/proc/stat), with no event in the guest.
    Steal = 6,
}

impl What {
    pub const ALL: [What; 6] = [What::Preempted, What::Blocked, What::Irq, What::Softirq, What::Fault, What::Steal];

    pub fn from_u8(v: u8) -> Option<What> {
        What::ALL.iter().copied().find(|w| *w as u8 == v)
    }

    /// The label of `/metrics`' `tailgate_offcpu_seconds_total{kind}`.
    pub fn label(self) -> &'static str {
        match self {
            What::Preempted => "preempted",
            What::Blocked => "blocked",
            What::Irq => "irq",
            What::Softirq => "softirq",
            What::Fault => "page_fault",
            What::Steal => "host_steal",
        }
    }
}

/// The kernel's softirq vectors, by number (include/linux/interrupt.h).
const SOFTIRQS: [&str; 10] =
    ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"];

/// One interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start_ns: u64,
    pub end_ns: u64,
    /// The loop's thread (0 for steal, which is per core).
    pub tid: u32,
    pub cpu: u32,
    pub what: What,
    /// A task's pid, an IRQ's number, a softirq's vector; for steal, the
    /// steal time in the window (ns).
    pub id: u64,
    /// Off the CPU: how many tasks ran meanwhile.
    pub switches: u16,
    /// A task's comm, an IRQ action's name (NUL-padded).
    pub name: [u8; 16],
}

/// The size of `struct interval` in bpf/offcpu.bpf.c.
pub const WIRE_LEN: usize = 48;

impl Interval {
    /// From the ring buffer's bytes (`None`: too short, or a kind this
    /// build does not know).
    pub fn from_wire(b: &[u8]) -> Option<Interval> {
        let b = b.get(..WIRE_LEN)?;
        let u64_at = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        let mut name = [0u8; 16];
        name.copy_from_slice(&b[32..48]);
        Some(Interval {
            start_ns: u64_at(0),
            end_ns: u64_at(8),
            tid: u32_at(16),
            cpu: u32_at(20),
            id: u64::from(u32_at(24)),
            switches: u16::from_ne_bytes([b[28], b[29]]),
            what: What::from_u8(b[30])?,
            name,
        })
    }

    pub fn len_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// The name, as text.
    pub fn name(&self) -> String {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..n]).into_owned()
    }

    /// What the report calls it: "preempted by COMM", "irq NAME",
    /// "softirq NET_RX", "page fault", "host steal", "blocked".
    pub fn describe(&self) -> String {
        match self.what {
            What::Preempted => format!("preempted by {}", self.name()),
            What::Blocked => "blocked (the loop slept)".into(),
            What::Irq => {
                let n = self.name();
                if n.is_empty() {
                    format!("irq {}", self.id)
                } else {
                    format!("irq {n}")
                }
            }
            What::Softirq => {
                format!("softirq {}", SOFTIRQS.get(self.id as usize).copied().unwrap_or("?"))
            }
            What::Fault => "page fault".into(),
            What::Steal => "host steal".into(),
        }
    }

    /// As a record of the sample store.
    pub fn to_sample(&self) -> Sample {
        let mut payload = [0u8; crate::sampler::PAYLOAD_BYTES];
        payload[..16].copy_from_slice(&self.name);
        Sample {
            msg_type: kind::OFFCPU,
            t_rx_frame: self.start_ns,
            t_delivered: self.start_ns,
            t_handled: self.end_ns,
            conn: self.tid,
            core: self.cpu.min(255) as u8,
            status: self.what as u8,
            trace_id: self.id,
            loop_iter: u64::from(self.switches),
            payload_len: 16,
            payload,
            ..Sample::default()
        }
    }

    /// From a record of the sample store (`None`: not an interval).
    pub fn from_sample(s: &Sample) -> Option<Interval> {
        if s.msg_type != kind::OFFCPU {
            return None;
        }
        let mut name = [0u8; 16];
        name.copy_from_slice(&s.payload[..16]);
        Some(Interval {
            start_ns: s.t_rx_frame,
            end_ns: s.t_handled,
            tid: s.conn,
            cpu: u32::from(s.core),
            what: What::from_u8(s.status)?,
            id: s.trace_id,
            switches: s.loop_iter.min(u64::from(u16::MAX)) as u16,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_goes_through_the_wire_and_the_store_unchanged() {
        let mut wire = [0u8; WIRE_LEN];
        wire[..8].copy_from_slice(&1_000u64.to_ne_bytes());
        wire[8..16].copy_from_slice(&6_000_000u64.to_ne_bytes());
        wire[16..20].copy_from_slice(&42u32.to_ne_bytes());
        wire[20..24].copy_from_slice(&1u32.to_ne_bytes());
        wire[24..28].copy_from_slice(&777u32.to_ne_bytes());
        wire[28..30].copy_from_slice(&3u16.to_ne_bytes());
        wire[30] = What::Preempted as u8;
        wire[32..35].copy_from_slice(b"hog");
        let i = Interval::from_wire(&wire).unwrap();
        assert_eq!((i.start_ns, i.end_ns, i.tid, i.cpu, i.id, i.switches), (1_000, 6_000_000, 42, 1, 777, 3));
        assert_eq!(i.describe(), "preempted by hog");
        assert_eq!(i.len_ns(), 5_999_000);
        assert_eq!(Interval::from_sample(&i.to_sample()), Some(i));
        wire[30] = 99;
        assert_eq!(Interval::from_wire(&wire), None, "a kind this build does not know");
        assert_eq!(Interval::from_wire(&wire[..20]), None, "too short");
    }

    #[test]
    fn each_kind_has_its_name() {
        let i = |what, id, name: &str| {
            let mut n = [0u8; 16];
            n[..name.len()].copy_from_slice(name.as_bytes());
            Interval { start_ns: 0, end_ns: 1, tid: 1, cpu: 0, what, id, switches: 0, name: n }.describe()
        };
        assert_eq!(i(What::Irq, 11, "virtio0-input.0"), "irq virtio0-input.0");
        assert_eq!(i(What::Irq, 11, ""), "irq 11");
        assert_eq!(i(What::Softirq, 3, ""), "softirq NET_RX");
        assert_eq!(i(What::Fault, 0, ""), "page fault");
        assert_eq!(i(What::Steal, 10_000_000, ""), "host steal");
    }
}
