// SPDX-License-Identifier: MIT OR GPL-2.0-only
//
// What took a loop's core: every interval in which a watched thread (a
// gateway loop, registered by tid in `watched`) was off its CPU or
// interrupted, with what ran instead, written to a ring buffer that the
// reporter thread reads (never the loop).
//
//   off-CPU   sched_switch out of a watched thread to its switch back in:
//             preempted (involuntary) or blocked (it slept: epoll_wait of a
//             blocking loop), and the task that ran longest meanwhile on
//             that CPU (its comm and pid);
//   irq       irq_handler_entry/exit while a watched thread was current:
//             the IRQ's number and its action's name;
//   softirq   softirq_entry/exit while a watched thread was current: the
//             vector (NET_RX, TIMER, ...);
//   fault     page_fault_user in a watched thread, gathered into bursts.
//
// Intervals shorter than `min_ns` are not written. Kernel types are
// declared here with only the fields read, and relocated by libbpf against
// the running kernel's BTF (CO-RE): no vmlinux.h, no kernel headers.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
} __attribute__((preserve_access_index));

struct irqaction {
	const char *name;
} __attribute__((preserve_access_index));


// Set from user space before load (read-only data).
volatile const __u64 min_ns = 1000;

#define KIND_PREEMPTED 1
#define KIND_BLOCKED 2
#define KIND_IRQ 3
#define KIND_SOFTIRQ 4
#define KIND_FAULT 5

// One interval, as user space reads it (src/sampler/offcpu/record.rs).
struct interval {
	__u64 start_ns;
	__u64 end_ns;
	__u32 tid;	  // the watched thread
	__u32 cpu;
	__u32 pid;	  // what ran: a task's pid; an IRQ's number; a softirq's vector
	__u16 switches;	  // off-CPU: tasks that ran on the CPU meanwhile
	__u8 kind;
	__u8 pad;
	char comm[16];	  // what ran: a task's comm, an IRQ action's name
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} intervals SEC(".maps");

// Watched thread ids (the value is unused).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} watched SEC(".maps");

// A watched thread off its CPU: since when, and what ran longest.
struct off {
	__u64 start_ns;
	__u64 last_ns; // the last switch on its CPU
	__u64 top_ns;
	__u32 top_pid;
	__u32 cpu;
	__u16 switches;
	__u8 preempted;
	__u8 pad[5];
	char top_comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct off);
} offs SEC(".maps");

// Per CPU: the watched thread that is off this CPU (0: none), and the
// start of an IRQ or softirq that interrupted a watched thread.
struct cpu_state {
	__u32 off_tid;
	__u32 irq;
	__u64 irq_start;
	__u64 softirq_start;
	__u32 softirq_vec;
	__u32 pad;
	char irq_name[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} cpus SEC(".maps");

// Intervals the ring buffer had no room for.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline int is_watched(__u32 tid)
{
	return tid != 0 && bpf_map_lookup_elem(&watched, &tid) != 0;
}

static __always_inline struct cpu_state *this_cpu(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&cpus, &zero);
}

// This CPU's state if the thread an IRQ or softirq interrupts is watched.
static __always_inline struct cpu_state *interrupted_watched(void)
{
	if (!is_watched((__u32)bpf_get_current_pid_tgid()))
		return 0;
	return this_cpu();
}

// Written without a wake-up (BPF_RB_NO_WAKEUP): a wake-up is an irq_work
// interrupt on the writing CPU, the loop's; the reader drains on a timer.
static __always_inline void write(__u64 start, __u64 end, __u32 tid, __u32 cpu, __u8 kind, __u32 pid,
				  __u16 switches, const char *comm)
{
	struct interval *e = bpf_ringbuf_reserve(&intervals, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			*n += 1;
		return;
	}
	e->start_ns = start;
	e->end_ns = end;
	e->tid = tid;
	e->cpu = cpu;
	e->pid = pid;
	e->switches = switches;
	e->kind = kind;
	e->pad = 0;
	__builtin_memcpy(e->comm, comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

// An interval of at least `min_ns`.
static __always_inline void emit(__u64 start, __u64 end, __u32 tid, __u32 cpu, __u8 kind, __u32 pid,
				 __u16 switches, const char *comm)
{
	if (end < start || end - start < min_ns)
		return;
	write(start, end, tid, cpu, kind, pid, switches, comm);
}

// Page faults have no exit tracepoint: a watched thread's faults are
// gathered into bursts (each within FAULT_GAP_NS of the last), and a burst
// is written when the next fault comes later than that, or the thread is
// switched out: its first and last fault, and how many (`pid`). A lone
// fault is a burst of one, of length 0.
#define FAULT_GAP_NS 100000

struct burst {
	__u64 first_ns;
	__u64 last_ns;
	__u32 n;
	__u32 cpu;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct burst);
} bursts SEC(".maps");

// Write thread `tid`'s pending burst of faults, if any, and forget it.
static __always_inline void flush_burst(__u32 tid)
{
	struct burst *b = bpf_map_lookup_elem(&bursts, &tid);
	if (!b)
		return;
	char none[16] = {};
	write(b->first_ns, b->last_ns, tid, b->cpu, KIND_FAULT, b->n, 0, none);
	bpf_map_delete_elem(&bursts, &tid);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(tg_sched_switch, _Bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 prev_tid = prev->pid;
	__u32 next_tid = next->pid;
	struct cpu_state *c = this_cpu();
	if (!c)
		return 0;

	// A task that ran while a watched thread was off this CPU leaves it:
	// charge it the time since the last switch.
	if (c->off_tid != 0 && prev_tid != c->off_tid) {
		__u32 t = c->off_tid;
		struct off *o = bpf_map_lookup_elem(&offs, &t);
		if (o) {
			__u64 ran = now - o->last_ns;
			o->last_ns = now;
			if (o->switches < 0xffff)
				o->switches += 1;
			if (ran > o->top_ns) {
				o->top_ns = ran;
				o->top_pid = prev_tid;
				__builtin_memcpy(o->top_comm, prev->comm, sizeof(o->top_comm));
			}
		}
	}

	if (is_watched(prev_tid)) {
		// Its faults so far are one burst: written now, not when (if ever)
		// it faults again.
		flush_burst(prev_tid);
		struct off o = {};
		o.start_ns = now;
		o.last_ns = now;
		o.cpu = bpf_get_smp_processor_id();
		// Still runnable (TASK_RUNNING, 0) when switched out: preempted, on
		// the way back to user space as well as in the kernel (`preempt`).
		o.preempted = (preempt || prev_state == 0) ? 1 : 0;
		bpf_map_update_elem(&offs, &prev_tid, &o, BPF_ANY);
		c->off_tid = prev_tid;
	}

	if (is_watched(next_tid)) {
		struct off *o = bpf_map_lookup_elem(&offs, &next_tid);
		if (o) {
			emit(o->start_ns, now, next_tid, o->cpu, o->preempted ? KIND_PREEMPTED : KIND_BLOCKED,
			     o->top_pid, o->switches, o->top_comm);
			bpf_map_delete_elem(&offs, &next_tid);
		}
		c->off_tid = 0;
	}
	return 0;
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(tg_irq_entry, int irq, struct irqaction *action)
{
	struct cpu_state *c = interrupted_watched();
	if (!c)
		return 0;
	c->irq = irq;
	c->irq_start = bpf_ktime_get_ns();
	const char *name = BPF_CORE_READ(action, name);
	if (bpf_probe_read_kernel_str(c->irq_name, sizeof(c->irq_name), name) < 0)
		c->irq_name[0] = 0;
	return 0;
}

SEC("tp_btf/irq_handler_exit")
int BPF_PROG(tg_irq_exit, int irq, struct irqaction *action, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct cpu_state *c = this_cpu();
	if (!c || c->irq_start == 0)
		return 0;
	if (is_watched(tid) && c->irq == (__u32)irq)
		emit(c->irq_start, bpf_ktime_get_ns(), tid, bpf_get_smp_processor_id(), KIND_IRQ, irq, 0, c->irq_name);
	c->irq_start = 0;
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(tg_softirq_entry, unsigned int vec)
{
	struct cpu_state *c = interrupted_watched();
	if (!c)
		return 0;
	c->softirq_vec = vec;
	c->softirq_start = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(tg_softirq_exit, unsigned int vec)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct cpu_state *c = this_cpu();
	if (!c || c->softirq_start == 0)
		return 0;
	if (is_watched(tid) && c->softirq_vec == vec) {
		char none[16] = {};
		emit(c->softirq_start, bpf_ktime_get_ns(), tid, bpf_get_smp_processor_id(), KIND_SOFTIRQ, vec, 0, none);
	}
	c->softirq_start = 0;
	return 0;
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(tg_fault, unsigned long address, void *regs, unsigned long error_code)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (!is_watched(tid))
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct burst *b = bpf_map_lookup_elem(&bursts, &tid);
	if (b && now - b->last_ns <= FAULT_GAP_NS) {
		b->last_ns = now;
		b->n += 1;
		return 0;
	}
	if (b)
		flush_burst(tid);
	struct burst nb = { .first_ns = now, .last_ns = now, .n = 1, .cpu = bpf_get_smp_processor_id() };
	bpf_map_update_elem(&bursts, &tid, &nb, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
