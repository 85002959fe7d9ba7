//! Test frames: Ethernet + IPv4 + UDP with a small stamped payload, and the parser for it.
//!
//! Layout of every frame `uswitch-bench` sends (`size` bytes, no FCS, 62 ≤ size ≤ buffer):
//!
//! | bytes   | field                                                            |
//! |---------|------------------------------------------------------------------|
//! | 0..14   | Ethernet: dst MAC, src MAC (per flow, see [`crate::flows`]), 0x0800 |
//! | 14..34  | IPv4: 10.x.y.z → 10.255.x.1, TTL 64, proto UDP, valid checksum     |
//! | 34..42  | UDP 1024 → 1024, checksum 0 (allowed for IPv4)                    |
//! | 42..46  | magic `"USB"` + stream id (the sending link, so rx can check order) |
//! | 46..54  | sequence number in its stream (little endian)                    |
//! | 54..62  | send timestamp, ns since the run started (latency mode; else 0)  |
//!
//! Only the magic, stream, sequence and stamp change per packet: a template is built once per
//! flow and [`stamp`] rewrites 20 bytes in place. [`parse`] never panics on short or foreign
//! frames; it returns None.
use crate::flows::Flow;

pub const ETH_LEN: usize = 14;
pub const IP_LEN: usize = 20;
pub const UDP_LEN: usize = 8;
/// Offset of the payload (magic).
pub const PAYLOAD_OFF: usize = ETH_LEN + IP_LEN + UDP_LEN;
pub const PAYLOAD_LEN: usize = 20;
/// Smallest frame that carries the whole payload.
pub const MIN_SIZE: usize = PAYLOAD_OFF + PAYLOAD_LEN;
const MAGIC: [u8; 3] = *b"USB";

/// What [`parse`] found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub stream: u8,
    pub seq: u64,
    pub ts_ns: u64,
}

/// Internet checksum over `data` (RFC 1071).
pub fn ip_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds the template frame of `size` bytes for `flow` (payload zeroed).
/// `size` must be at least [`MIN_SIZE`] and at most 65535 (checked by the CLI).
pub fn build(flow: &Flow, size: usize) -> Vec<u8> {
    let size = size.clamp(MIN_SIZE, 0xffff);
    let mut f = vec![0u8; size];
    f[0..6].copy_from_slice(&flow.dst_mac);
    f[6..12].copy_from_slice(&flow.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_total = (size - ETH_LEN) as u16;
    let ip = &mut f[ETH_LEN..ETH_LEN + IP_LEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&flow.src_ip);
    ip[16..20].copy_from_slice(&flow.dst_ip);
    let csum = ip_checksum(ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let udp = &mut f[ETH_LEN + IP_LEN..PAYLOAD_OFF];
    udp[0..2].copy_from_slice(&1024u16.to_be_bytes());
    udp[2..4].copy_from_slice(&1024u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_total - IP_LEN as u16).to_be_bytes());
    f
}

/// Writes the payload (magic, stream, seq, timestamp) into a frame built by [`build`].
/// Frames shorter than [`MIN_SIZE`] are left alone.
#[cfg(test)]
pub fn stamp(frame: &mut [u8], s: Stamp) {
    if let Some(p) = frame.get_mut(PAYLOAD_OFF..MIN_SIZE) {
        p.copy_from_slice(&payload(s));
    }
}

/// The [`PAYLOAD_LEN`] bytes [`stamp`] writes at [`PAYLOAD_OFF`].
#[inline]
pub fn payload(s: Stamp) -> [u8; PAYLOAD_LEN] {
    let mut p = [0u8; PAYLOAD_LEN];
    p[0..3].copy_from_slice(&MAGIC);
    p[3] = s.stream;
    p[4..12].copy_from_slice(&s.seq.to_le_bytes());
    p[12..20].copy_from_slice(&s.ts_ns.to_le_bytes());
    p
}

/// Extracts the payload written by [`stamp`]; None for frames that are too short, not
/// IPv4/UDP, or lack the magic (e.g. testpmd's own packets).
#[inline]
pub fn parse(frame: &[u8]) -> Option<Stamp> {
    let p = frame.get(PAYLOAD_OFF..MIN_SIZE)?;
    if frame[12..14] != [0x08, 0x00] || frame[ETH_LEN + 9] != 17 || p[0..3] != MAGIC {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&p[4..12]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&p[12..20]);
    Some(Stamp {
        stream: p[3],
        seq: u64::from_le_bytes(seq),
        ts_ns: u64::from_le_bytes(ts),
    })
}

/// Per-stream sequence checking on the receive side: counts gaps (lost packets) and packets
/// arriving with a sequence number below the expected one (reordered or duplicated).
#[derive(Debug, Clone)]
pub struct SeqCheck {
    next: [u64; 256],
    seen: [bool; 256],
    pub lost: u64,
    pub out_of_order: u64,
}

impl Default for SeqCheck {
    fn default() -> Self {
        SeqCheck {
            next: [0; 256],
            seen: [false; 256],
            lost: 0,
            out_of_order: 0,
        }
    }
}

impl SeqCheck {
    #[inline]
    pub fn check(&mut self, s: &Stamp) {
        let i = usize::from(s.stream);
        if !self.seen[i] {
            // Streams start at 0; a later first packet means the first ones were lost.
            self.seen[i] = true;
            self.lost += s.seq;
            self.next[i] = s.seq + 1;
            return;
        }
        if s.seq >= self.next[i] {
            self.lost += s.seq - self.next[i];
            self.next[i] = s.seq + 1;
        } else {
            self.out_of_order += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::Flows;

    #[test]
    fn build_stamp_parse_roundtrip() {
        let flows = Flows::new(3, 4);
        for size in [MIN_SIZE, 64, 128, 1514] {
            let mut f = build(flows.get(2), size);
            assert_eq!(f.len(), size);
            assert_eq!(&f[0..6], &flows.get(2).dst_mac);
            assert_eq!(&f[6..12], &flows.get(2).src_mac);
            // IP header checksum verifies to zero.
            assert_eq!(ip_checksum(&f[ETH_LEN..ETH_LEN + IP_LEN]), 0);
            assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, size - ETH_LEN);
            assert_eq!(
                u16::from_be_bytes([f[38], f[39]]) as usize,
                size - ETH_LEN - IP_LEN
            );
            assert_eq!(parse(&f), None, "no magic yet");
            let s = Stamp {
                stream: 7,
                seq: 0x0102_0304_0506,
                ts_ns: u64::MAX - 3,
            };
            stamp(&mut f, s);
            assert_eq!(parse(&f), Some(s));
        }
    }

    #[test]
    fn parse_rejects_short_and_foreign() {
        let flows = Flows::new(0, 1);
        let mut f = build(flows.get(0), 64);
        stamp(
            &mut f,
            Stamp {
                stream: 1,
                seq: 5,
                ts_ns: 9,
            },
        );
        for n in 0..MIN_SIZE {
            assert_eq!(parse(&f[..n]), None, "len {n}");
        }
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp), None);
        let mut tcp = f.clone();
        tcp[ETH_LEN + 9] = 6;
        assert_eq!(parse(&tcp), None);
        let mut short = f.clone();
        stamp(
            &mut short[..10],
            Stamp {
                stream: 1,
                seq: 1,
                ts_ns: 1,
            },
        ); // no panic
        assert_eq!(short, f);
    }

    #[test]
    fn checksum_known_value() {
        // RFC 1071 example header (from Wikipedia's IPv4 checksum article).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ip_checksum(&h), 0xb861);
        assert_eq!(ip_checksum(&[0xff]), 0x00ff);
    }

    #[test]
    fn seq_check_counts_gaps_and_reorder() {
        let mut c = SeqCheck::default();
        let st = |stream, seq| Stamp {
            stream,
            seq,
            ts_ns: 0,
        };
        for s in [0, 1, 2, 5, 6, 4, 7] {
            c.check(&st(0, s));
        }
        c.check(&st(1, 3)); // first packet of stream 1 is #3: 3 lost
        c.check(&st(1, 4));
        assert_eq!(c.lost, 2 + 3);
        assert_eq!(c.out_of_order, 1);
    }
}
