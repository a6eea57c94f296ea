//! Our SoupBinTCP framing checked by code we did not write: a session of
//! packets from `tailgate::venue::soup` (OUCH 5.0 inside), put in TCP
//! segments of a capture file, dissected by tshark
//! (`-d tcp.port==PORT,soupbintcp`). Every packet must be recognised, with
//! the type, the fields and the sequence numbers we wrote, and no
//! malformed-packet warning.

mod common;

use common::*;
use tailgate::stack::frame::tcp_flags::{ACK, PSH, SYN};
use tailgate::stack::sim::{tcp_frame, Seg, MAC_A, MAC_B};
use tailgate::venue::ouch::{self, Enter, Inbound, Outbound};
use tailgate::venue::soup::{self, Packet};

const PORT: u16 = 26400;

/// pcap: the global header, then each frame with a timestamp.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        if v == 0x0004_0002 {
            b.extend_from_slice(&2u16.to_le_bytes());
            b.extend_from_slice(&4u16.to_le_bytes());
        } else {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    for (i, f) in frames.iter().enumerate() {
        for v in [1_700_000_000u32, i as u32 * 1000, f.len() as u32, f.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(f);
    }
    b
}

struct Tcp {
    frames: Vec<Vec<u8>>,
    seq: [u32; 2],
}

impl Tcp {
    /// A handshake between the client (side 0, port 40000) and the venue (side 1, PORT).
    fn new() -> Tcp {
        let mut t = Tcp { frames: Vec::new(), seq: [1000, 5000] };
        t.seg(0, SYN, Vec::new());
        t.seg(1, SYN | ACK, Vec::new());
        t.seg(0, ACK, Vec::new());
        t
    }

    fn seg(&mut self, side: usize, flags: u8, payload: Vec<u8>) {
        let (src, dst) = if side == 0 { (40000, PORT) } else { (PORT, 40000) };
        let (sm, dm) = if side == 0 { (MAC_A, MAC_B) } else { (MAC_B, MAC_A) };
        let (sip, dip) =
            if side == 0 { ([198, 18, 0, 2], [198, 18, 0, 1]) } else { ([198, 18, 0, 1], [198, 18, 0, 2]) };
        let len = payload.len() as u32 + u32::from(flags & SYN != 0);
        let seg = Seg {
            src_port: src,
            dst_port: dst,
            seq: self.seq[side],
            ack: if flags & ACK != 0 { self.seq[1 - side] } else { 0 },
            flags,
            window: 65535,
            payload,
            ..Seg::default()
        };
        self.frames.push(tcp_frame(sm, dm, sip.into(), dip.into(), &seg));
        self.seq[side] = self.seq[side].wrapping_add(len);
    }

    fn packets(&mut self, side: usize, ps: &[Packet<'_>]) {
        let mut payload = Vec::new();
        for p in ps {
            let mut b = [0u8; 2048];
            let n = soup::encode(p, &mut b).unwrap();
            payload.extend_from_slice(&b[..n]);
        }
        self.seg(side, ACK | PSH, payload);
    }
}

#[test]
fn tshark_dissects_our_soupbintcp() {
    if !tool_available("tshark_dissects_our_soupbintcp", "tshark") {
        return;
    }
    let mut user = [b' '; 6];
    soup::put_alpha(&mut user, b"gw01");
    let mut pass = [b' '; 10];
    soup::put_alpha(&mut pass, b"pw");
    let mut sym = [b' '; 8];
    soup::put_alpha(&mut sym, b"AAPL");
    let enter = Inbound::Enter(Enter {
        user_ref: 1,
        side: b'B',
        qty: 100,
        symbol: sym,
        price: 1_502_500,
        tif: b'0',
        display: b'Y',
        capacity: b'A',
        iso: b'N',
        cross: b'N',
        cl_ord_id: *b"1             ",
    });
    let mut enter_bytes = [0u8; 64];
    let en = ouch::encode_inbound(&enter, &mut enter_bytes).unwrap();
    let mut ev = [0u8; 16];
    let evn = ouch::encode_outbound(&Outbound::SystemEvent { ts: 34_200_000_000_000, code: b'S' }, &mut ev).unwrap();

    let mut t = Tcp::new();
    t.packets(0, &[Packet::LoginRequest { username: user, password: pass, session: [b' '; 10], seq: 1 }]);
    t.packets(1, &[Packet::LoginAccepted { session: *b"    SESS01", next_seq: 1 }, Packet::Sequenced(&ev[..evn])]);
    // Two packets in one segment, and a heartbeat each way.
    t.packets(0, &[Packet::Unsequenced(&enter_bytes[..en]), Packet::ClientHeartbeat]);
    t.packets(1, &[Packet::ServerHeartbeat, Packet::Sequenced(&ev[..evn])]);
    t.packets(0, &[Packet::LogoutRequest]);
    t.packets(1, &[Packet::EndOfSession]);
    let path = std::env::temp_dir().join(format!("tg-soup-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap(&t.frames)).unwrap();
    /// Removes the capture however the test ends (TG_KEEP_PCAP=1 keeps it, to look at).
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            if std::env::var_os("TG_KEEP_PCAP").is_none() {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }
    let _remove = Remove(path.clone());
    let port = PORT.to_string();
    let tshark = |args: &[&str]| tshark_soup(path.to_str().unwrap(), &port, args);
    let fields = tshark(&[
        "-Y",
        "soupbintcp",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "soupbintcp.packet_type",
        "-e",
        "soupbintcp.req_seq_num.invalid",
        "-e",
        "soupbintcp.next_seq_num.invalid",
        "-e",
        "_ws.malformed",
        "-e",
        "_ws.expert",
    ]);
    let verbose = tshark(&["-V"]);
    let rows: Vec<Vec<&str>> = fields.lines().filter(|l| l.contains('|')).map(|l| l.split('|').collect()).collect();
    let types: Vec<String> = rows.iter().map(|r| r[0].replace([',', '\''], "")).collect();
    // One row per TCP segment; a segment with two packets lists both types.
    assert_eq!(types, vec!["L", "AS", "UR", "HS", "O", "Z"], "tshark saw: {fields}");
    for r in &rows {
        assert!(r[1..].iter().all(|f| f.is_empty()), "tshark flagged a packet: {fields}");
    }
    for want in [
        "User Name: gw01",
        "Requested sequence number: 1",
        "Session:     SESS01",
        "Next sequence number: 1",
        "Sequence number: 1 (Calculated)",
        "Sequence number: 2 (Calculated)",
        "Client Heartbeat",
        "Server Heartbeat",
        "Logout Request",
        "End of Session",
        // Its OUCH dissector knows the System Event (OUCH 4 and 5 alike).
        "Event Code: Start of Day",
    ] {
        assert!(verbose.contains(want), "tshark -V lacks {want:?}:\n{verbose}");
    }
    let text = &verbose;
    let err = &fields;
    assert!(!text.contains("Malformed") && !err.contains("Malformed"), "{text} {err}");
}
