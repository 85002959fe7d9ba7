//! The pod's kernel interface: a tap device (`IFF_TAP | IFF_NO_PI`) and its L2/L3 setup.
//!
//! Rules:
//! - The tap is not persistent: it exists while our fd is open, so the kernel removes it when
//!   the agent exits for any reason (SIGTERM, crash, kill -9). [`Tap::close`] closes it
//!   explicitly and waits until the interface is gone.
//! - The fd is non-blocking; reads and writes never block the shuttle loop.
//! - Setup (MAC, MTU, addresses, link up, routes) runs `ip` (iproute2) in the current netns:
//!   control path only, once. Any failure removes the tap again and reports the `ip` message.
//! - Routes that already exist are not an error (another interface of the pod may have added
//!   the default route).
use crate::error::{AgentError, Result};
use crate::podconf::{fmt_mac, PodConfig};
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use tun::AbstractDevice;

pub struct Tap {
    dev: tun::Device,
    name: String,
}

/// Opens /dev/net/tun and creates the tap `name` (in the calling thread's netns).
pub fn create(name: &str) -> Result<Tap> {
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err(AgentError::TunUnavailable(
            "/dev/net/tun does not exist (load the tun module, or mount /dev/net/tun into the pod)"
                .into(),
        ));
    }
    if link_exists(name) {
        return Err(AgentError::Netconf {
            ifname: name.into(),
            msg: "an interface with this name already exists in the pod's netns".into(),
        });
    }
    let mut cfg = tun::Configuration::default();
    cfg.tun_name(name).layer(tun::Layer::L2);
    let dev = tun::Device::new(&cfg).map_err(|e| {
        let hint = match &e {
            tun::Error::Io(io) if io.kind() == ErrorKind::PermissionDenied => {
                " (needs CAP_NET_ADMIN and access to /dev/net/tun)"
            }
            _ => "",
        };
        AgentError::TunUnavailable(format!("creating tap {name}: {e}{hint}"))
    })?;
    let real = dev.tun_name().unwrap_or_else(|_| name.to_string());
    dev.set_nonblock()
        .map_err(|e| AgentError::TunUnavailable(format!("tap {real}: O_NONBLOCK: {e}")))?;
    tracing::info!(tap = %real, "tap created");
    Ok(Tap { dev, name: real })
}

fn ip(args: &[&str]) -> std::result::Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn link_exists(name: &str) -> bool {
    // Not /sys/class/net: sysfs shows the netns it was mounted in, not the thread's.
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Tap {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }

    /// Sets MAC and MTU, adds the addresses, brings the link up, adds the routes.
    pub fn configure(&self, c: &PodConfig, mac: &[u8; 6]) -> Result<()> {
        let n = self.name.as_str();
        let err = |msg: String| AgentError::Netconf {
            ifname: n.to_string(),
            msg,
        };
        let mtu = c.mtu.to_string();
        ip(&[
            "link",
            "set",
            "dev",
            n,
            "address",
            &fmt_mac(mac),
            "mtu",
            &mtu,
        ])
        .map_err(err)?;
        for a in &c.ips {
            let fam = if a.addr.is_ipv4() { "-4" } else { "-6" };
            let cidr = a.to_string();
            let mut args = vec![fam, "addr", "add", cidr.as_str(), "dev", n];
            if a.addr.is_ipv6() {
                // No duplicate address detection delay: the pod's address is ours alone.
                args.push("nodad");
            }
            ip(&args).map_err(err)?;
        }
        ip(&["link", "set", "dev", n, "up"]).map_err(err)?;
        for r in &c.routes {
            let fam = if r.dst.addr.is_ipv4() { "-4" } else { "-6" };
            let dst = if r.dst.is_default() {
                "default".to_string()
            } else {
                r.dst.to_string()
            };
            let gw = r.gw.map(|g| g.to_string());
            let mut args = vec![fam, "route", "add", dst.as_str()];
            if let Some(g) = &gw {
                args.extend(["via", g.as_str()]);
            }
            args.extend(["dev", n]);
            match ip(&args) {
                Ok(()) => {}
                Err(m) if m.contains("File exists") => {
                    tracing::warn!(tap = n, route = %r, "route already present; kept");
                }
                Err(m) => return Err(err(m)),
            }
        }
        tracing::info!(tap = n, mac = %fmt_mac(mac), mtu = c.mtu, ips = ?c.ips.iter().map(|a| a.to_string()).collect::<Vec<_>>(), routes = c.routes.len(), "tap configured");
        Ok(())
    }

    /// Reads one frame; `Ok(None)` when none is queued.
    #[inline]
    pub fn recv(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        loop {
            match self.dev.recv(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes one frame; `Ok(false)` when the kernel queue is full (frame dropped).
    #[inline]
    pub fn send(&self, frame: &[u8]) -> std::io::Result<bool> {
        loop {
            match self.dev.send(frame) {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the fd, which removes the (non-persistent) tap.
    pub fn close(self) {
        let name = self.name.clone();
        drop(self.dev);
        tracing::info!(tap = %name, "tap removed");
    }
}
