//! The pod's kernel interface: a tap device (`IFF_TAP | IFF_NO_PI`) and its L2/L3 setup.
//!
//! Rules:
//! - The tap is not persistent: it exists while our fd is open, so the kernel removes it when
//!   the agent exits for any reason (SIGTERM, crash, kill -9). [`Tap::close`] closes it
//!   explicitly.
//! - It is created with our own `TUNSETIFF` ioctl on `/dev/net/tun` (the one `unsafe` block of
//!   this file: a fixed-size `ifreq` we own, passed to the kernel for the duration of the call).
//! - The fd starts non-blocking (the read/write path); the io_uring path switches it to
//!   blocking ([`Tap::set_nonblocking`]) so the kernel arms a poll instead of failing reads.
//! - Setup (MAC, MTU, addresses, link up, routes) runs `ip` (iproute2) in the current netns:
//!   control path only, once. Any failure removes the tap again and reports the `ip` message.
//! - Routes that already exist are not an error (another interface of the pod may have added
//!   the default route).
//! - Write errors that mean "the interface is down" (`EIO`) drop the frame (counted by the
//!   caller), as a NIC without carrier would; `EBADFD` (device gone) is fatal.
use crate::error::{AgentError, Result};
use crate::podconf::{fmt_mac, PodConfig};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

/// Path of the tun/tap clone device.
pub const TUN_DEV: &str = "/dev/net/tun";

/// `struct ifreq` as TUNSETIFF reads and writes it: the name and the `ifr_flags` member of the
/// union, padded to the kernel's 40 bytes (x86_64/aarch64: 16 + 24).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const _: () = assert!(std::mem::size_of::<IfReqFlags>() == 40);

nix::ioctl_readwrite_bad!(tunsetiff, libc::TUNSETIFF, IfReqFlags);

pub struct Tap {
    file: File,
    name: String,
}

/// Outcome of writing one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Ok,
    /// Kernel queue full or interface down: the frame is dropped.
    Dropped,
}

/// Opens /dev/net/tun and creates the tap `name` (in the calling thread's netns).
pub fn create(name: &str) -> Result<Tap> {
    if !std::path::Path::new(TUN_DEV).exists() {
        return Err(AgentError::TunUnavailable(format!(
            "{TUN_DEV} does not exist (load the tun module, or mount {TUN_DEV} into the pod)"
        )));
    }
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
        return Err(AgentError::Netconf {
            ifname: name.into(),
            msg: format!(
                "not a valid interface name (1..={} bytes, no '/', ' ')",
                libc::IFNAMSIZ - 1
            ),
        });
    }
    if link_exists(name) {
        return Err(AgentError::Netconf {
            ifname: name.into(),
            msg: "an interface with this name already exists in the pod's netns".into(),
        });
    }
    let hint = |e: &std::io::Error| match e.kind() {
        ErrorKind::PermissionDenied => " (needs CAP_NET_ADMIN and access to /dev/net/tun)",
        _ => "",
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(TUN_DEV)
        .map_err(|e| AgentError::TunUnavailable(format!("opening {TUN_DEV}: {e}{}", hint(&e))))?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `req` is a live, properly sized and initialized `ifreq` layout that we own for the
    // whole call; TUNSETIFF reads it and writes the final name back into it, nothing more. The
    // fd is the open /dev/net/tun file above.
    let rc = unsafe { tunsetiff(file.as_raw_fd(), &mut req) };
    if let Err(errno) = rc {
        let e = std::io::Error::from(errno);
        return Err(AgentError::TunUnavailable(format!(
            "creating tap {name} (TUNSETIFF): {e}{}",
            hint(&e)
        )));
    }
    let end = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    let real = String::from_utf8_lossy(&req.name[..end]).into_owned();
    tracing::info!(tap = %real, "tap created");
    Ok(Tap { file, name: real })
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
        self.file.as_raw_fd()
    }

    /// Sets or clears `O_NONBLOCK` on the tap fd.
    pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        let fl = fcntl(self.file.as_raw_fd(), FcntlArg::F_GETFL)?;
        let mut fl = OFlag::from_bits_truncate(fl);
        fl.set(OFlag::O_NONBLOCK, on);
        fcntl(self.file.as_raw_fd(), FcntlArg::F_SETFL(fl))?;
        Ok(())
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
            match (&self.file).read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes one frame; [`Sent::Dropped`] when the kernel queue is full or the interface is
    /// down.
    #[inline]
    pub fn send(&self, frame: &[u8]) -> std::io::Result<Sent> {
        loop {
            match (&self.file).write(frame) {
                Ok(_) => return Ok(Sent::Ok),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return write_error(e),
            }
        }
    }

    /// Closes the fd, which removes the (non-persistent) tap.
    pub fn close(self) {
        let name = self.name.clone();
        drop(self.file);
        tracing::info!(tap = %name, "tap removed");
    }
}

/// Classifies a failed tap write: full queue and link down drop the frame, the rest is fatal.
pub fn write_error(e: std::io::Error) -> std::io::Result<Sent> {
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EIO) | Some(libc::ENOBUFS) => Ok(Sent::Dropped),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_are_classified() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert_eq!(write_error(e(libc::EAGAIN)).unwrap(), Sent::Dropped);
        assert_eq!(write_error(e(libc::EIO)).unwrap(), Sent::Dropped);
        assert!(write_error(e(libc::EBADFD)).is_err());
    }

    #[test]
    fn bad_names_are_refused_before_touching_the_kernel() {
        for n in ["", "a/b", "0123456789abcdef"] {
            let e = create(n).err().expect("accepted");
            assert_eq!(e.exit_code(), 6, "{n:?}: {e}");
        }
    }
}
