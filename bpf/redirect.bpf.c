// SPDX-License-Identifier: (MIT OR Apache-2.0)
//
// tailgate XDP program: redirect to the AF_XDP socket of the receiving queue
// the frames that belong to the user-space stack, and pass everything else
// to the kernel.
//
// Ours:
//   - ARP whose target protocol address is the stack's address;
//   - IPv4 TCP or UDP to the stack's address whose destination port is a
//     listening port (map `ports`) or inside the stack's local port range
//     (outbound connections);
//   - when the stack owns its address (own_address = 1): ICMP echo requests
//     to it, at most icmp_echo_per_sec a second per CPU (a token bucket of
//     icmp_echo_burst), so the stack answers pings but is no reflector.
// Everything else for the stack's address: when the stack owns it, dropped
// here and counted by reason (TCP or UDP to another port, UDP, ICMP over
// the rate or of another type, fragments, other protocols): a flood of
// those never reaches the stack's core, and nothing answers them. When the
// kernel shares the address, XDP_PASS. Frames for other addresses:
// XDP_PASS. If no socket is bound on the queue, bpf_redirect_map falls back
// to XDP_PASS (flags argument), so a dead gateway never black-holes the
// interface.
//
// Every redirected frame carries its arrival time (bpf_ktime_get_ns, the
// CLOCK_MONOTONIC the stack reads) in 16 bytes of XDP metadata in front of
// the packet: { __u64 rx_ns; __u32 magic; __u32 pad }. AF_XDP copies the
// metadata into the UMEM frame, so the stack knows when each frame arrived
// whatever the loop was doing at the time (docs/ATTRIBUTION.md).
//
// Fault injection (--inject loss:N): with drop_every = N > 0, every N-th
// TCP segment that carries payload to the stack is dropped (XDP_DROP,
// counted), so the peer has to retransmit it. Off (0) by default.
//
// Every header access is bounds-checked against data_end. No printk.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Set from user space before load (read-only data).
volatile const __u32 stack_ip = 0;      // network byte order
volatile const __u16 local_port_lo = 0; // host byte order, inclusive
volatile const __u16 local_port_hi = 0; // host byte order, inclusive
// 1: the kernel has no such address, the stack owns it outright: every IPv4
// frame to it is redirected, so the stack answers closed ports with RST and
// ICMP echo itself. 0: the kernel shares the address: only the stack's ports.
volatile const __u8 own_address = 1;
// Stamp arrival times: 0 not at all, 1 into the metadata in front of the
// frame, 2 into its destination MAC address (for kernels whose verifier
// refuses bpf_xdp_adjust_meta; the stack puts its own address back).
volatile const __u8 stamp_rx = 0;
// Drop every N-th TCP data segment to the stack; 0: never.
volatile const __u32 drop_every = 0;
// ICMP echo requests redirected per second per CPU (0: none), and the
// bucket's depth.
volatile const __u32 icmp_echo_per_sec = 100;
volatile const __u32 icmp_echo_burst = 20;

#define META_MAGIC 0x54474d31 // "TGM1"
// The first byte of a destination MAC carrying an arrival time (stamp_rx 2):
// a locally administered unicast address, then the time's low 40 bits.
#define MAC_STAMP_MARK 0xfa

struct rx_meta {
	__u64 rx_ns;
	__u32 magic;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// Listening ports (host byte order) -> 1.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

enum {
	CNT_SEEN = 0,
	CNT_REDIRECTED = 1,
	CNT_PASSED = 2,
	CNT_MALFORMED = 3,
	CNT_INJECTED_DROP = 4,
	// Dropped for the stack's own address (own_address = 1), by reason.
	CNT_DROP_PORT = 5,       // TCP or UDP to a port of nobody's
	CNT_DROP_ICMP_RATE = 6,  // echo requests over the rate
	CNT_DROP_ICMP_OTHER = 7, // other ICMP types
	CNT_DROP_FRAGMENT = 8,   // IP fragments (the stack reassembles none)
	CNT_DROP_PROTO = 9,      // other IP protocols
	CNT_MAX = 10,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);
	if (v)
		*v += 1;
}

// ARP for IPv4 over Ethernet: fixed 28-byte body.
struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

static __always_inline int ours_port(__u16 port)
{
	if (port >= local_port_lo && port <= local_port_hi && local_port_hi != 0)
		return 1;
	return bpf_map_lookup_elem(&ports, &port) != 0;
}

// Every drop_every-th TCP data segment, counted across CPUs (one atomic
// counter, as nftables' numgen): a per-CPU count would let the CPU that
// only sees the peer's retransmissions drop every N-th of those, a loss
// pattern the kernel-side injector does not have. Fault injection only.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} data_segments SEC(".maps");

static __always_inline int inject_loss(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&data_segments, &zero);
	if (!n)
		return 0;
	__u64 k = __sync_fetch_and_add(n, 1) + 1;
	if (k % drop_every)
		return 0;
	count(CNT_INJECTED_DROP);
	return 1;
}

static __always_inline void stamp_mac(struct xdp_md *ctx, __u64 now)
{
	__u8 *d = (void *)(long)ctx->data;
	if ((void *)(d + 6) > (void *)(long)ctx->data_end)
		return;
	// Broadcast and multicast keep their address (ARP requests); and a
	// frame no socket will take goes to the kernel as it came.
	if (d[0] & 1)
		return;
	__u32 q = ctx->rx_queue_index;
	if (!bpf_map_lookup_elem(&xsks, &q))
		return;
	d[0] = MAC_STAMP_MARK;
	d[1] = now >> 32;
	d[2] = now >> 24;
	d[3] = now >> 16;
	d[4] = now >> 8;
	d[5] = now;
}

static __always_inline void stamp(struct xdp_md *ctx, __u64 now)
{
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct rx_meta)))
		return; // no room: the stack falls back to its poll time
	struct rx_meta *m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > (void *)(long)ctx->data)
		return;
	m->rx_ns = now;
	m->magic = META_MAGIC;
	m->pad = 0;
}

// The ICMP echo token bucket of this CPU: credit in ns (a token costs
// 1e9 / icmp_echo_per_sec ns), and when it was last topped up.
struct bucket {
	__u64 credit_ns;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bucket);
} echo_bucket SEC(".maps");

static __always_inline int echo_allowed(void)
{
	__u32 zero = 0;
	struct bucket *b = bpf_map_lookup_elem(&echo_bucket, &zero);
	if (!b || icmp_echo_per_sec == 0)
		return 0;
	__u64 cost = 1000000000ULL / icmp_echo_per_sec;
	__u64 cap = cost * (icmp_echo_burst ? icmp_echo_burst : 1);
	__u64 now = bpf_ktime_get_ns();
	if (b->last_ns == 0)
		b->credit_ns = cap;
	else if (now > b->last_ns)
		b->credit_ns += now - b->last_ns;
	b->last_ns = now;
	if (b->credit_ns > cap)
		b->credit_ns = cap;
	if (b->credit_ns < cost)
		return 0;
	b->credit_ns -= cost;
	return 1;
}

static __always_inline int redirect(struct xdp_md *ctx)
{
	count(CNT_REDIRECTED);
	if (stamp_rx == 1)
		stamp(ctx, bpf_ktime_get_ns());
	else if (stamp_rx == 2)
		stamp_mac(ctx, bpf_ktime_get_ns());
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

static __always_inline int pass(void)
{
	count(CNT_PASSED);
	return XDP_PASS;
}

static __always_inline int malformed(void)
{
	count(CNT_MALFORMED);
	return XDP_PASS;
}

static __always_inline int drop(__u32 why)
{
	count(why);
	return XDP_DROP;
}

// Not for the stack: dropped when it owns the address, else the kernel's.
static __always_inline int not_ours(__u32 why)
{
	return own_address ? drop(why) : pass();
}

SEC("xdp")
int tailgate_redirect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	count(CNT_SEEN);
	if ((void *)(eth + 1) > data_end)
		return malformed();

	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		struct arp_ipv4 *arp = (void *)(eth + 1);
		__u32 tpa;
		if ((void *)(arp + 1) > data_end)
			return malformed();
		if (arp->ptype != bpf_htons(ETH_P_IP) || arp->plen != 4)
			return pass();
		__builtin_memcpy(&tpa, arp->tpa, 4);
		if (tpa == stack_ip)
			return redirect(ctx);
		return pass();
	}

	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return pass();

	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return malformed();
	if (ip->daddr != stack_ip)
		return pass();
	if (ip->ihl < 5 || ip->version != 4)
		return malformed(); // ours by address, but unparseable: the stack would drop it too
	if (drop_every && ip->protocol == IPPROTO_TCP && !(ip->frag_off & bpf_htons(0x1fff))) {
		struct tcp_min {
			__be16 sport;
			__be16 dport;
			__be32 seq;
			__be32 ack;
			__u8 doff_res;
			__u8 flags;
		} *tcp = (void *)((__u8 *)ip + ip->ihl * 4);
		if ((void *)(tcp + 1) > data_end)
			return malformed();
		__u32 hdrs = ip->ihl * 4 + (tcp->doff_res >> 4) * 4;
		if (bpf_ntohs(ip->tot_len) > hdrs && inject_loss())
			return XDP_DROP;
	}
	int frag = (ip->frag_off & bpf_htons(0x3fff)) != 0; // MF set or an offset
	if (ip->protocol == IPPROTO_ICMP && own_address) {
		if (frag)
			return drop(CNT_DROP_FRAGMENT);
		__u8 *icmp = (__u8 *)ip + ip->ihl * 4;
		if ((void *)(icmp + 1) > data_end)
			return malformed();
		if (icmp[0] != 8) // echo request
			return drop(CNT_DROP_ICMP_OTHER);
		return echo_allowed() ? redirect(ctx) : drop(CNT_DROP_ICMP_RATE);
	}
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return not_ours(CNT_DROP_PROTO);
	// Fragments after the first carry no ports, and the stack reassembles
	// none: the kernel's when it shares the address.
	if (frag)
		return not_ours(CNT_DROP_FRAGMENT);

	__u8 *l4 = (__u8 *)ip + ip->ihl * 4;
	if ((void *)(l4 + 4) > data_end)
		return malformed();
	__u16 dport = ((__u16)l4[2] << 8) | l4[3];
	if (ours_port(dport))
		return redirect(ctx);
	return not_ours(CNT_DROP_PORT);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
