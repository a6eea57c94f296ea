//! The interface's checks: its driver and XDP mode, zero-copy, queues,
//! offloads, ring sizes, drops, and a veth's peer.

use super::*;

pub(super) fn interface(o: &Options, ifdir: &str, tune: &str, kv: (u32, u32), v: &mut Vec<Finding>) {
    let driver = std::fs::read_link(format!("{ifdir}/device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .or_else(|| {
            ethtool(None, &["-i"], &o.iface)
                .and_then(|t| t.lines().find_map(|l| l.strip_prefix("driver: ").map(str::to_string)))
        })
        .unwrap_or_else(|| "unknown".into());
    let up = read(&format!("{ifdir}/operstate")).unwrap_or_default();
    v.push(f(
        "interface",
        if up == "up" { Status::Ok } else { Status::Warn },
        format!("{} driver={driver} operstate={up}", o.iface),
        format!("bring it up: ip link set {} up", o.iface),
    ));
    if NATIVE_XDP.contains(&driver.as_str()) {
        v.push(f("XDP mode", Status::Ok, format!("native (driver {driver})"), ""));
    } else {
        v.push(f(
            "XDP mode",
            Status::Warn,
            format!("generic (skb) likely: {driver} is not a known native-XDP driver"),
            "generic XDP works but copies every frame into an skb first; use a NIC with native XDP",
        ));
    }

    // Queues against the one socket the gateway binds.
    let queues = crate::backend::xdp::rx_queues(&o.iface) as u32;
    let mine: Vec<String> = o.queues.iter().map(u32::to_string).collect();
    let mine = mine.join(",");
    if let Some(q) = o.queues.iter().find(|&&q| q >= queues) {
        v.push(f(
            "queues",
            Status::Fail,
            format!("{queues} rx queue(s), --queue {q}"),
            format!("--queue must be below {queues}"),
        ));
    } else if queues as usize > o.queues.len() {
        v.push(f(
            "queues",
            Status::Warn,
            format!("{queues} rx queues, AF_XDP sockets on queue(s) {mine} only"),
            format!(
                "traffic hashed to other queues never reaches the stack: give --queue every queue (one loop each), \
                 steer it (scripts/tune-host.sh --iface {} --core C --port PORT --queue Q --apply) or ethtool -L {} combined {}",
                o.iface,
                o.iface,
                o.queues.len()
            ),
        ));
    } else {
        v.push(f("queues", Status::Ok, format!("{queues} rx queue(s), one AF_XDP socket and loop each"), ""));
    }

    // RSS: can a loop pick local ports whose replies come back to its queue?
    if queues > 1 {
        match crate::sys::ethtool::rss_config(&o.iface) {
            Ok(c) => v.push(f(
                "RSS",
                Status::Ok,
                format!(
                    "Toeplitz on the four-tuple, {}-entry table: outbound connections (load) take ports whose replies \
                     come back to their loop's queue",
                    c.indirection.len()
                ),
                "",
            )),
            Err(e) => v.push(f(
                "RSS",
                Status::Info,
                e,
                "outbound connections cannot choose their reply queue: with a loop on every queue, strays are handed \
                 to the owning loop (handoff_forwarded)",
            )),
        }
    }

    // Drops before the stack: the kernel's count for the interface, and the
    // driver's per-queue counters that say drop or miss.
    let mut drops: Vec<String> = Vec::new();
    if let Some(n) = read(&format!("{ifdir}/statistics/rx_dropped")).and_then(|s| s.parse::<u64>().ok()) {
        if n > 0 {
            drops.push(format!("rx_dropped={n}"));
        }
    }
    if let Some(t) = ethtool(None, &["-S"], &o.iface) {
        drops.extend(nonzero_drops(&t));
    }
    v.push(if drops.is_empty() {
        f("drops before the stack", Status::Ok, "none counted on the interface", "")
    } else {
        f(
            "drops before the stack",
            Status::Warn,
            drops.join(" "),
            "frames the kernel or driver dropped since boot; while the gateway runs, its exit line and \
             tailgate_drops_total name the AF_XDP socket's own (xsk_rx_fill_ring_empty, xsk_rx_ring_full, ...): docs/TUNING.md, drops",
        )
    });

    // Offloads that would hand the stack partial checksums or merged frames.
    match ethtool(None, &["-k"], &o.iface) {
        None => v.push(f("offloads", Status::Info, "ethtool -k failed or ethtool is missing", "install ethtool")),
        Some(k) => {
            let on = |name| feature(&k, name) == Some("on");
            let mut bad = Vec::new();
            if on("large-receive-offload") {
                bad.push("lro on".to_string());
            }
            if on("rx-gro-hw") {
                bad.push("rx-gro-hw on".to_string());
            }
            // A veth's peer transmits with CHECKSUM_PARTIAL when its TX
            // checksum offload is on: frames then arrive here with partial
            // checksums, which the stack verifies and drops (rx_invalid).
            let mut peer_note = None;
            if driver == "veth" {
                match veth_peer(ifdir) {
                    Some((ns, p)) => match ethtool(ns.as_deref(), &["-k"], &p) {
                        Some(pk) if feature(&pk, "tx-checksumming") == Some("on") => {
                            bad.push(format!("tx-checksumming on the veth peer {p} (partial checksums)"))
                        }
                        Some(_) => {}
                        None => peer_note = Some(format!("cannot read the offloads of the veth peer {p}")),
                    },
                    None => peer_note = Some("cannot find the veth's peer: check it has tx-checksumming off".into()),
                }
            }
            if !bad.is_empty() {
                v.push(f(
                    "offloads",
                    Status::Fail,
                    bad.join(", "),
                    format!("ethtool -K {} lro off rx-gro-hw off; on a veth's peer: ethtool -K PEER tx off", o.iface),
                ));
            } else if let Some(note) = peer_note {
                v.push(f(
                    "offloads",
                    Status::Warn,
                    format!("no LRO here; {note}"),
                    "ethtool -K PEER tx off in the peer's namespace (scripts/lab.sh does this for the lab)",
                ));
            } else {
                v.push(f("offloads", Status::Ok, "no LRO, no partial checksums", ""));
            }
        }
    }
    // IRQ deferral only pays when the loop drives the queue's NAPI itself
    // (zero-copy, SO_PREFER_BUSY_POLL); on veth in copy mode it cost 50x at
    // the p50 (docs/TUNING.md), so 0 is the safe value.
    let napi = read(&format!("{ifdir}/napi_defer_hard_irqs"));
    match napi.as_deref() {
        Some("0") => v.push(f("napi_defer_hard_irqs", Status::Ok, "0 (NAPI runs as frames arrive)", "")),
        Some(n) => v.push(f(
            "napi_defer_hard_irqs",
            Status::Warn,
            n,
            format!(
                "frames wait up to gro_flush_timeout unless the loop drives NAPI (zero-copy NICs only; on veth copy mode \
                 the p50 went from 2.2 to 110 us): 0 ({tune}, group iface)"
            ),
        )),
        None => v.push(f("napi_defer_hard_irqs", Status::Info, "not present (kernel < 5.11?)", "")),
    }

    // AF_XDP itself.
    if !o.probe {
        let zc = ZERO_COPY.contains(&driver.as_str());
        v.push(f(
            "AF_XDP zero-copy",
            if zc { Status::Ok } else { Status::Warn },
            if zc {
                format!("{driver} supports it (not probed)")
            } else {
                format!("{driver}: copy mode expected (not probed)")
            },
            "copy mode costs a copy per frame; --probe binds a socket to find out",
        ));
        let wake = kv >= (5, 4);
        v.push(f(
            "need_wakeup",
            if wake { Status::Ok } else { Status::Fail },
            if wake { "kernel >= 5.4 (not probed)" } else { "kernel < 5.4" },
            "upgrade the kernel",
        ));
        let bp = kv >= (5, 11);
        v.push(f(
            "busy-poll socket options",
            if bp { Status::Ok } else { Status::Warn },
            if bp { "SO_PREFER_BUSY_POLL, SO_BUSY_POLL_BUDGET: kernel >= 5.11 (not probed)" } else { "kernel < 5.11" },
            "without them the NIC's IRQ and the loop compete for the queue: upgrade to 5.11+",
        ));
        return;
    }
    let Ok(ifindex) = crate::sys::net::ifindex(&o.iface) else { return };
    let queue = o.queues.first().copied().unwrap_or(0);
    let cfg = XskConfig { queue, zero_copy: ZeroCopy::Auto, ..XskConfig::default() };
    match Xsk::new(ifindex, &cfg) {
        Ok(s) => {
            v.push(f(
                "AF_XDP zero-copy",
                if s.mode == BindMode::ZeroCopy { Status::Ok } else { Status::Warn },
                if s.mode == BindMode::ZeroCopy {
                    "zero-copy (probed)"
                } else {
                    "copy mode: the driver refused zero-copy (probed)"
                },
                "copy mode costs a copy per frame; zero-copy needs driver support (i40e, ice, mlx5, ...)",
            ));
            v.push(f("need_wakeup", Status::Ok, "bound with XDP_USE_NEED_WAKEUP (probed)", ""));
            v.push(f(
                "busy-poll socket options",
                if s.busy_poll { Status::Ok } else { Status::Warn },
                if s.busy_poll {
                    "SO_PREFER_BUSY_POLL, SO_BUSY_POLL, SO_BUSY_POLL_BUDGET accepted (probed)"
                } else {
                    "refused by the kernel (probed)"
                },
                "needs kernel 5.11+ and CAP_NET_ADMIN for SO_BUSY_POLL",
            ));
            v.push(f(
                "UMEM pages",
                if s.hugepages { Status::Ok } else { Status::Warn },
                if s.hugepages { "2 MiB hugepages (probed)" } else { "4 KiB pages (probed)" },
                format!("reserve hugepages: {tune} (group hugepages)"),
            ));
        }
        Err(e) => v.push(f(
            "AF_XDP socket",
            Status::Fail,
            format!("cannot bind queue {queue}: {e}"),
            "root or CAP_NET_ADMIN+CAP_NET_RAW; EBUSY means another socket (a running gateway?) holds the queue",
        )),
    }
}
