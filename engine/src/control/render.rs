//! Human-readable output for `uswitchctl`: aligned tables of ports, bridges, stats, FDB and
//! worker cycles. Pure functions from API result types to text (`--json` bypasses them).
use crate::config::{MemifRole, PortKind, VlanMode};
use crate::control::api::{BridgeEntry, FdbEntry, PortEntry, ShowResult, WorkerStats};
use crate::port::{PortStats, QueueStats};

/// Left-aligned columns separated by two spaces; no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(c);
            let pad = w
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(c.chars().count());
            l.push_str(&" ".repeat(pad));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in rows {
        line(&mut r.iter().map(|s| s.as_str()));
    }
    out
}

/// "10,20,30-32": VLAN lists with runs compressed.
pub fn vlan_list(v: &[u16]) -> String {
    let mut s = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j].wrapping_add(1) {
            j += 1;
        }
        s.push(if j > i + 1 {
            format!("{}-{}", v[i], v[j])
        } else if j == i + 1 {
            format!("{},{}", v[i], v[j])
        } else {
            v[i].to_string()
        });
        i = j + 1;
    }
    s.join(",")
}

fn attach_col(e: &PortEntry) -> String {
    match (&e.config.bridge, &e.xconnect) {
        (Some(b), _) => match &e.config.vlan {
            VlanMode::None => b.clone(),
            VlanMode::Access(v) => format!("{b} access {v}"),
            VlanMode::Trunk(l) => format!("{b} trunk {}", vlan_list(l)),
        },
        (None, Some(x)) => format!("xconnect {x}"),
        (None, None) => "-".into(),
    }
}

fn detail(e: &PortEntry, keys: &[&str]) -> String {
    for k in keys {
        match e.info.details.get(*k) {
            Some(serde_json::Value::String(s)) => return s.clone(),
            Some(serde_json::Value::Null) | None => {}
            Some(v) => return v.to_string(),
        }
    }
    "-".into()
}

/// "QUEUES x SLOTS" of a port that is up and announces its queue pairs and ring size (memif:
/// `ring_size`, vhost-user: the first of `ring_sizes`), else "-".
fn rings_col(e: &PortEntry) -> String {
    let d = &e.info.details;
    let queues = d.get("rx_queues").and_then(serde_json::Value::as_u64);
    let slots = d
        .get("ring_size")
        .and_then(serde_json::Value::as_u64)
        .or_else(|| {
            d.get("ring_sizes")
                .and_then(serde_json::Value::as_array)
                .and_then(|a| a.first())
                .and_then(serde_json::Value::as_u64)
        });
    match (queues, slots) {
        (Some(q), Some(n)) if q > 0 && e.info.link_up => format!("{q}x{n}"),
        _ => "-".into(),
    }
}

pub fn ports(entries: &[PortEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let (role, socket) = match &e.config.kind {
                PortKind::Memif(m) => {
                    let role = match m.role {
                        MemifRole::Server => "server",
                        MemifRole::Client => "client",
                    };
                    (role, format!("{} id {}", m.socket, m.id))
                }
                PortKind::VhostUser(v) => {
                    let mode = match v.mode {
                        crate::config::VhostUserMode::Server => "server",
                        crate::config::VhostUserMode::Client => "client",
                    };
                    (mode, v.socket.clone())
                }
                PortKind::Kernel(k) => ("-", format!("iface {}", k.iface)),
                PortKind::Dpdk(d) => ("-", format!("devargs {}", d.devargs)),
            };
            let peer = match (&e.info.peer_name, &e.info.peer_version) {
                (Some(n), Some(v)) => format!("{n} ({v})"),
                (Some(n), None) => n.clone(),
                _ => "-".into(),
            };
            vec![
                e.config.name.clone(),
                e.info.kind.clone(),
                role.into(),
                if e.info.link_up { "up" } else { "down" }.into(),
                attach_col(e),
                socket,
                rings_col(e),
                detail(e, &["memory", "memory_backing", "backing"]),
                peer,
            ]
        })
        .collect();
    table(
        &[
            "PORT",
            "TYPE",
            "ROLE",
            "LINK",
            "BRIDGE/VLAN",
            "SOCKET/IFACE",
            "RINGS",
            "MEMORY",
            "PEER",
        ],
        &rows,
    )
}

pub fn bridges(entries: &[BridgeEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|b| {
            vec![
                b.config.name.clone(),
                b.config.aging_secs.to_string(),
                format!("{}/{}", b.fdb_entries, b.config.fdb_max),
                b.fdb_full_drops.to_string(),
                if b.ports.is_empty() {
                    "-".into()
                } else {
                    b.ports.join(",")
                },
            ]
        })
        .collect();
    table(&["BRIDGE", "AGING-S", "FDB", "FDB-FULL", "PORTS"], &rows)
}

fn queue_row(port: &str, q: &str, link: &str, s: &QueueStats) -> Vec<String> {
    let mut r = vec![port.to_string(), q.to_string(), link.to_string()];
    for v in [
        s.rx_packets,
        s.rx_bytes,
        s.tx_packets,
        s.tx_bytes,
        s.drop_no_buffer,
        s.drop_ring_full,
        s.drop_bad_desc,
        s.drop_no_route,
    ] {
        r.push(v.to_string());
    }
    r
}

pub fn stats(list: &[PortStats]) -> String {
    let mut rows = Vec::new();
    let mut notes = String::new();
    for p in list {
        rows.push(queue_row(
            &p.name,
            "total",
            if p.link_up { "up" } else { "down" },
            &p.total,
        ));
        for (i, q) in p.queues.iter().enumerate() {
            rows.push(queue_row(&p.name, &i.to_string(), "", q));
        }
        notes.push_str(&format!(
            "{}: connects {}, disconnects {}, control errors {}",
            p.name, p.connects, p.disconnects, p.control_errors
        ));
        if let Some(r) = &p.last_disconnect_reason {
            notes.push_str(&format!(", last disconnect: {r}"));
        }
        notes.push('\n');
    }
    let headers = [
        "PORT",
        "QUEUE",
        "LINK",
        "RX-PKTS",
        "RX-BYTES",
        "TX-PKTS",
        "TX-BYTES",
        "DROP-NOBUF",
        "DROP-RINGFULL",
        "DROP-BADDESC",
        "DROP-NOROUTE",
    ];
    let mut out = table(&headers, &rows);
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    out
}

pub fn worker(w: &WorkerStats) -> String {
    let total = w.busy_cycles + w.idle_cycles;
    let busy_pct = if total > 0 {
        100.0 * w.busy_cycles as f64 / total as f64
    } else {
        0.0
    };
    let core = w
        .core
        .map_or_else(|| "not pinned".to_string(), |c| c.to_string());
    format!(
        "core:               {core}\nburst:              {}\niterations:         {} ({} busy)\npackets:            {} ({:.1} per busy iteration)\nbusy cycles:        {} ({busy_pct:.1}% of loop cycles)\nidle cycles:        {}\nbusy cycles/packet: {:.1}\nstalls:             {} ({} cycles, {} packets)\ncycles/packet incl. stalls: {:.1}\n",
        w.burst,
        w.iterations,
        w.busy_iterations,
        w.packets,
        w.packets_per_busy_iteration,
        w.busy_cycles,
        w.idle_cycles,
        w.busy_cycles_per_packet,
        w.stalls,
        w.stall_cycles,
        w.stall_packets,
        w.busy_cycles_per_packet_with_stalls
    )
}

pub fn fdb(entries: &[FdbEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.mac.clone(),
                e.vlan.to_string(),
                e.port.clone(),
                e.age_secs.to_string(),
            ]
        })
        .collect();
    table(&["MAC", "VLAN", "PORT", "AGE-S"], &rows)
}

pub fn show(s: &ShowResult) -> String {
    let mut out = format!("uswitchd {}\n\nBridges:\n", s.version);
    out.push_str(&bridges(&s.bridges));
    out.push_str("\nPorts:\n");
    out.push_str(&ports(&s.ports));
    out.push_str("\nXconnects:\n");
    if s.xconnects.is_empty() {
        out.push_str("(none)\n");
    }
    for x in &s.xconnects {
        out.push_str(&format!("{} <-> {}\n", x.a, x.b));
    }
    out.push_str("\nWorker:\n");
    out.push_str(&worker(&s.worker));
    if !s.restore_errors.is_empty() {
        out.push_str("\nNot restored at startup:\n");
        for e in &s.restore_errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortConfig;
    use crate::port::PortInfo;

    #[test]
    fn vlan_list_compacts_runs() {
        assert_eq!(vlan_list(&[10, 20, 30, 31, 32]), "10,20,30-32");
        assert_eq!(vlan_list(&[1, 2]), "1,2");
        assert_eq!(vlan_list(&[]), "");
    }

    #[test]
    fn table_aligns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["xxxx".into(), "1".into()],
                vec!["y".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A     LONGER\nxxxx  1\ny     22\n");
    }

    #[test]
    fn port_row_shows_attach_socket_memory_peer() {
        let config = serde_json::from_value(serde_json::json!({
            "name": "p0", "type": "memif", "socket": "/run/a.sock", "role": "server", "id": 3,
            "bridge": "br0", "vlan": {"trunk": [10, 11, 12]}
        }))
        .unwrap();
        let mut info = PortInfo {
            name: "p0".into(),
            kind: "memif".into(),
            link_up: true,
            ..Default::default()
        };
        info.peer_name = Some("testpmd".into());
        info.details.insert("memory".into(), "hugetlbfs".into());
        info.details.insert("rx_queues".into(), 2.into());
        info.details.insert("ring_size".into(), 256.into());
        let t = ports(&[PortEntry {
            config,
            info,
            xconnect: None,
        }]);
        let row = t.lines().nth(1).unwrap();
        for want in [
            "p0",
            "memif",
            "server",
            "up",
            "br0 trunk 10-12",
            "/run/a.sock id 3",
            "2x256",
            "hugetlbfs",
            "testpmd",
        ] {
            assert!(row.contains(want), "{want} missing in {row:?}");
        }
    }

    #[test]
    fn rings_column_only_for_ports_that_are_up() {
        let config: PortConfig = serde_json::from_value(serde_json::json!({
            "name": "v0", "type": "vhost-user", "socket": "/run/v.sock", "mode": "server"
        }))
        .unwrap();
        let mut info = PortInfo {
            name: "v0".into(),
            kind: "vhost-user".into(),
            link_up: true,
            ..Default::default()
        };
        info.details.insert("rx_queues".into(), 1.into());
        info.details
            .insert("ring_sizes".into(), serde_json::json!([512, 512]));
        let entry = |info: PortInfo| PortEntry {
            config: config.clone(),
            info,
            xconnect: None,
        };
        assert_eq!(rings_col(&entry(info.clone())), "1x512");
        info.link_up = false;
        assert_eq!(rings_col(&entry(info.clone())), "-");
        info.link_up = true;
        info.details.remove("ring_sizes");
        assert_eq!(rings_col(&entry(info)), "-");
    }

    #[test]
    fn stats_have_each_drop_reason_per_queue() {
        let q = QueueStats {
            rx_packets: 5,
            drop_ring_full: 7,
            ..Default::default()
        };
        let s = PortStats {
            name: "p0".into(),
            total: q,
            queues: vec![q, QueueStats::default()],
            ..Default::default()
        };
        let t = stats(&[s]);
        assert!(
            t.contains("DROP-RINGFULL") && t.contains("DROP-NOROUTE") && t.contains("DROP-BADDESC")
        );
        assert_eq!(t.lines().filter(|l| l.starts_with("p0 ")).count(), 3);
        assert!(t.contains("p0: connects 0"));
    }
}
