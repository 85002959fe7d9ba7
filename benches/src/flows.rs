//! Flow sets: `--flows N` distinct source MAC/IP pairs per sending link.
//!
//! Flow `i` (0 ≤ i < N ≤ 65536) of link `l`:
//! - source MAC `02:00:00:<l>:<i >> 8>:<i & 0xff>` (locally administered unicast), source IP
//!   `10.<l>.<i >> 8>.<i & 0xff>`;
//! - destination MAC `02:ff:00:00:00:<l>` unless `--dst-mac` is given, destination IP
//!   `10.255.<l>.1`. The default destination is never used as a source by uswitch-bench, so a
//!   learning bridge floods it (with two ports: to the other one) and never learns it on the
//!   ingress port, even when a reflector sends the same frames back.
//!
//! Packets cycle through the flows round-robin.

/// Most flows per link (16 bits of the MAC / IP).
pub const MAX_FLOWS: u32 = 65536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
}

#[derive(Debug, Clone)]
pub struct Flows {
    flows: Vec<Flow>,
}

impl Flows {
    #[cfg(test)]
    /// `n` flows for link `link`, default destination. `n` is clamped to 1..=[`MAX_FLOWS`].
    pub fn new(link: u8, n: u32) -> Flows {
        Self::with_dst(link, n, None)
    }

    /// Like [`Flows::new`] with an explicit destination MAC for every flow.
    pub fn with_dst(link: u8, n: u32, dst: Option<[u8; 6]>) -> Flows {
        let n = n.clamp(1, MAX_FLOWS);
        let dst_mac = dst.unwrap_or([0x02, 0xff, 0, 0, 0, link]);
        let flows = (0..n)
            .map(|i| {
                let (hi, lo) = ((i >> 8) as u8, i as u8);
                Flow {
                    src_mac: [0x02, 0, 0, link, hi, lo],
                    dst_mac,
                    src_ip: [10, link, hi, lo],
                    dst_ip: [10, 255, link, 1],
                }
            })
            .collect();
        Flows { flows }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Flow `i` modulo the number of flows.
    pub fn get(&self, i: usize) -> &Flow {
        &self.flows[i % self.flows.len()]
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (also with `-`).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(format!("invalid MAC address {s:?}: expected 6 hex bytes"));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| format!("invalid MAC address {s:?}: {p:?} is not a hex byte"))?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn flows_are_distinct_and_never_target_a_source() {
        let mut srcs = HashSet::new();
        let mut dsts = HashSet::new();
        for link in 0..4u8 {
            let f = Flows::new(link, 1000);
            assert_eq!(f.len(), 1000);
            for i in 0..1000 {
                let fl = f.get(i);
                assert!(srcs.insert(fl.src_mac), "duplicate src MAC");
                assert_eq!(fl.src_mac[0] & 1, 0, "unicast");
                dsts.insert(fl.dst_mac);
            }
            assert_eq!(f.get(1000), f.get(0), "round robin");
        }
        assert!(srcs.is_disjoint(&dsts));
        let ips: HashSet<_> = (0..300).map(|i| Flows::new(1, 300).get(i).src_ip).collect();
        assert_eq!(ips.len(), 300);
    }

    #[test]
    fn flow_count_is_clamped() {
        assert_eq!(Flows::new(0, 0).len(), 1);
        assert_eq!(Flows::new(0, 10_000_000).len(), MAX_FLOWS as usize);
        let f = Flows::with_dst(0, 2, Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(f.get(1).dst_mac, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:0a:FF:00:01"), Ok([2, 0, 0xa, 0xff, 0, 1]));
        assert_eq!(parse_mac("02-00-0a-ff-00-01"), Ok([2, 0, 0xa, 0xff, 0, 1]));
        assert!(parse_mac("02:00:0a:ff:00").is_err());
        assert!(parse_mac("02:00:0a:ff:00:zz").is_err());
        assert!(parse_mac("02:00:0a:ff:00:100").is_err());
    }
}
