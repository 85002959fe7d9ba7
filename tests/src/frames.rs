//! Test frames and pcap files.
//!
//! testpmd cannot put 802.1Q tags on memif packets (memif has no VLAN insert offload), so
//! tests that need specific frames write them to a pcap file and let testpmd replay it
//! through a `net_pcap` port forwarded (io mode) to its memif port; frames the switch
//! delivers come back through the same pcap port's `tx_pcap` file. This module builds such
//! frames and reads/writes classic pcap files (microsecond timestamps, linktype Ethernet).
use std::io::Write;
use std::path::Path;

/// A MAC address from "aa:bb:cc:dd:ee:ff".
pub fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    assert_eq!(parts.len(), 6, "bad MAC {s}");
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("bad MAC {s}"));
    }
    m
}

/// An Ethernet frame `dst, src, [802.1Q vid], ethertype 0x0800 (IPv4-ish payload)`, `len`
/// bytes long in total (at least 60), payload filled with `fill`.
pub fn eth_frame(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, len: usize, fill: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(60));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    while f.len() < len.max(60) {
        f.push(fill);
    }
    f
}

/// VLAN id of an 802.1Q-tagged frame, None when untagged.
pub fn vlan_of(frame: &[u8]) -> Option<u16> {
    if frame.len() >= 18 && frame[12] == 0x81 && frame[13] == 0x00 {
        Some(u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff)
    } else {
        None
    }
}

/// Source MAC of a frame.
pub fn src_of(frame: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    if frame.len() >= 12 {
        m.copy_from_slice(&frame[6..12]);
    }
    m
}

/// Writes `frames` to a pcap file.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::File::create(path)?.write_all(&out)
}

/// Reads the frames of a pcap file (either byte order; a truncated last record is ignored).
pub fn read_pcap(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path)?;
    let bad = |m: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {m}", path.display()),
        )
    };
    if data.len() < 24 {
        return Err(bad("shorter than a pcap header"));
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(bad("not a pcap file")),
    };
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut frames = Vec::new();
    let mut pos = 24;
    while pos + 16 <= data.len() {
        let incl = u32_at(&data[pos + 8..]) as usize;
        pos += 16;
        if pos + incl > data.len() {
            break;
        }
        frames.push(data[pos..pos + incl].to_vec());
        pos += incl;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_roundtrip_and_vlan() {
        let a = mac("02:00:00:00:00:0a");
        let b = mac("02:00:00:00:00:0b");
        let frames = vec![
            eth_frame(b, a, Some(10), 64, 1),
            eth_frame(a, b, None, 100, 2),
        ];
        assert_eq!(frames[0].len(), 64);
        assert_eq!(vlan_of(&frames[0]), Some(10));
        assert_eq!(vlan_of(&frames[1]), None);
        assert_eq!(src_of(&frames[1]), b);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pcap");
        write_pcap(&p, &frames).unwrap();
        assert_eq!(read_pcap(&p).unwrap(), frames);
    }
}
