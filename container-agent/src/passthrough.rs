//! Passthrough mode: tells a DPDK application in the pod how to open the socket itself.
//!
//! Output: the `--vdev` argument on stdout (one line), and with `--output FILE` an env file
//! (`KEY=value` lines, no quoting needed: values contain no spaces) written atomically:
//!
//! - `USWITCH_VDEV` — `net_memif<N>,role=client,socket=<path>,id=<id>,socket-abstract=no[,mac=…]`
//!   or `net_virtio_user<N>,path=<path>,queues=<queues>[,server=1][,mac=…]` (the port's queue
//!   pairs, from the file's `queues`, default 1)
//! - `USWITCH_EAL_ARGS` — `--vdev=<USWITCH_VDEV>` (plus `--single-file-segments` for vhost-user)
//! - `USWITCH_IFNAME`, `USWITCH_IFTYPE`, `USWITCH_SOCKET`, `USWITCH_ROLE`, `USWITCH_MODE`,
//!   `USWITCH_MAC`, `USWITCH_IPS` (comma-separated CIDRs), `USWITCH_ROUTES` (comma-separated
//!   `dst` or `dst@gw`), `USWITCH_MTU`.
//!
//! DPDK 22.11's memif PMD treats `socket=` as an abstract name unless `socket-abstract=no`, so
//! filesystem sockets always get it; `@name` sockets get `socket-abstract=yes` and the bare name.
use crate::error::{AgentError, Result};
use crate::podconf::{fmt_mac, IfType, PodConfig};
use std::io::Write;
use std::path::Path;
use uswitch::config::{MemifMode, MemifRole};

/// The `--vdev` value for port index `idx`.
pub fn vdev(c: &PodConfig, idx: u32) -> String {
    let mut s = match c.iftype {
        IfType::Memif => {
            let role = match c.role {
                MemifRole::Client => "client",
                MemifRole::Server => "server",
            };
            let sock = match c.socket.strip_prefix('@') {
                Some(name) => format!("socket={name},socket-abstract=yes"),
                None => format!("socket={},socket-abstract=no", c.socket),
            };
            format!("net_memif{idx},role={role},{sock},id={}", c.id)
        }
        IfType::Vhostuser => {
            let mut s = format!("net_virtio_user{idx},path={},queues={}", c.socket, c.queues);
            if c.role == MemifRole::Server {
                s.push_str(",server=1");
            }
            s
        }
    };
    if let Some(m) = c.mac {
        s.push_str(&format!(",mac={}", fmt_mac(&m)));
    }
    s
}

/// The env-file lines.
pub fn env_lines(c: &PodConfig, idx: u32) -> Vec<(String, String)> {
    let v = vdev(c, idx);
    let mut eal = format!("--vdev={v}");
    if c.iftype == IfType::Vhostuser {
        eal.push_str(" --single-file-segments");
    }
    let role = match c.role {
        MemifRole::Client => "client",
        MemifRole::Server => "server",
    };
    let mode = match c.mode {
        MemifMode::Ethernet => "ethernet",
        MemifMode::Ip => "ip",
        MemifMode::Punt => "inject-punt",
    };
    let iftype = match c.iftype {
        IfType::Memif => "memif",
        IfType::Vhostuser => "vhostuser",
    };
    let join = |it: Vec<String>| it.join(",");
    vec![
        ("USWITCH_VDEV".into(), v),
        ("USWITCH_EAL_ARGS".into(), eal),
        ("USWITCH_IFNAME".into(), c.ifname.clone()),
        ("USWITCH_IFTYPE".into(), iftype.into()),
        ("USWITCH_SOCKET".into(), c.socket.clone()),
        ("USWITCH_ROLE".into(), role.into()),
        ("USWITCH_MODE".into(), mode.into()),
        (
            "USWITCH_MAC".into(),
            c.mac.map(|m| fmt_mac(&m)).unwrap_or_default(),
        ),
        (
            "USWITCH_IPS".into(),
            join(c.ips.iter().map(|i| i.to_string()).collect()),
        ),
        (
            "USWITCH_ROUTES".into(),
            join(
                c.routes
                    .iter()
                    .map(|r| match r.gw {
                        Some(g) => format!("{}@{g}", r.dst),
                        None => r.dst.to_string(),
                    })
                    .collect(),
            ),
        ),
        ("USWITCH_MTU".into(), c.mtu.to_string()),
    ]
}

/// Prints the vdev string; writes the env file when asked.
pub fn run(c: &PodConfig, idx: u32, output: Option<&Path>) -> Result<()> {
    if let Some(p) = c.socket_file() {
        if c.role == MemifRole::Client && !p.exists() {
            tracing::warn!(socket = %p.display(), "socket does not exist yet; the DPDK app will wait for it");
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", vdev(c, idx)).map_err(|e| AgentError::io("stdout", e))?;
    if let Some(path) = output {
        let mut text = String::new();
        for (k, v) in env_lines(c, idx) {
            text.push_str(&format!("{k}={v}\n"));
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                AgentError::io(format!("writing {}", path.display()), e)
            })?;
        tracing::info!(file = %path.display(), "env file written");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podconf::Overrides;

    fn conf(sock: &str) -> PodConfig {
        PodConfig::load(&Overrides {
            socket: Some(sock.into()),
            mac: Some("02:aa:00:00:00:01".into()),
            ips: vec!["10.0.0.2/24".into()],
            routes: vec!["default via 10.0.0.1".into(), "10.9.0.0/16".into()],
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn memif_vdev_and_env() {
        let c = conf("/run/uswitch/abc/memif-abc-net1.sock");
        assert_eq!(
            vdev(&c, 0),
            "net_memif0,role=client,socket=/run/uswitch/abc/memif-abc-net1.sock,socket-abstract=no,id=0,mac=02:aa:00:00:00:01"
        );
        let env = env_lines(&c, 2);
        let get = |k: &str| {
            env.iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert!(get("USWITCH_EAL_ARGS").starts_with("--vdev=net_memif2,"));
        assert_eq!(get("USWITCH_IPS"), "10.0.0.2/24");
        assert_eq!(get("USWITCH_ROUTES"), "0.0.0.0/0@10.0.0.1,10.9.0.0/16");
        assert_eq!(get("USWITCH_ROLE"), "client");
        assert!(env.iter().all(|(_, v)| !v.contains('\n')));
    }

    #[test]
    fn abstract_and_vhost() {
        let c = conf("@memif-x");
        assert!(vdev(&c, 0).contains("socket=memif-x,socket-abstract=yes"));
        let mut v = conf("/run/uswitch/abc-net1");
        v.iftype = IfType::Vhostuser;
        v.role = MemifRole::Server;
        assert_eq!(
            vdev(&v, 0),
            "net_virtio_user0,path=/run/uswitch/abc-net1,queues=1,server=1,mac=02:aa:00:00:00:01"
        );
        assert!(env_lines(&v, 0)[1].1.ends_with("--single-file-segments"));
        v.queues = 2;
        assert!(vdev(&v, 0).starts_with("net_virtio_user0,path=/run/uswitch/abc-net1,queues=2,"));
    }

    #[test]
    fn writes_env_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("env");
        run(&conf("/nonexistent.sock"), 0, Some(&f)).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.lines().any(|l| l == "USWITCH_MTU=1500"), "{text}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(run(&conf("/x.sock"), 0, Some(Path::new("/nonexistent/dir/env"))).is_err());
    }
}
