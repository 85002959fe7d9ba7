//! Shared pieces of the `agent_*` end-to-end tests: a "pod" (a network namespace plus a
//! `uswitch-agent` in tap mode attached to a uswitch port), ping, and a byte-exact TCP transfer
//! run in threads that entered the pods' namespaces.
#![allow(dead_code)]
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use uswitch_e2e::{bin_path, NetNs, ProcGuard};

pub const LINK: Duration = Duration::from_secs(15);

/// A uswitch-agent process.
pub struct Agent {
    pub proc: ProcGuard,
}

impl Agent {
    /// Spawns `uswitch-agent ARGS` (log level info).
    pub fn spawn(tag: &str, args: &[&str]) -> Agent {
        Self::spawn_wrapped(tag, &[], args)
    }

    /// Spawns `WRAPPER… uswitch-agent ARGS` (e.g. the `seccomp-deny` helper).
    pub fn spawn_wrapped(tag: &str, wrapper: &[&str], args: &[&str]) -> Agent {
        let agent = bin_path("uswitch-agent");
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(&agent);
                c
            }
            None => Command::new(&agent),
        };
        cmd.args(args);
        let proc = ProcGuard::spawn(&format!("agent-{tag}"), cmd, false)
            .unwrap_or_else(|e| panic!("cannot start uswitch-agent: {e}"));
        Agent { proc }
    }

    /// Waits for the agent's "memif link up" log line (after byte `from` of its output).
    pub fn wait_link_up(&mut self, from: usize) -> usize {
        self.proc
            .wait_output(from, "memif link up", LINK)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn out_len(&self) -> usize {
        self.proc.output_len()
    }
}

/// A network namespace with a tap interface `eth1` run by a uswitch-agent.
pub struct Pod {
    pub agent: Agent,
    pub ns: NetNs,
    pub ip: Ipv4Addr,
}

impl Pod {
    /// Starts an agent in tap mode for `socket` with `ip`/24 and MAC `02:a6:00:00:00:<n>`.
    pub fn tap(tag: &str, socket: &Path, n: u8) -> Pod {
        let ns = NetNs::new(tag).unwrap_or_else(|e| panic!("{e}"));
        Self::tap_in(tag, ns, socket, n, &[])
    }

    /// `extra` goes after `tap --netns NS` (tap options, or global ones).
    pub fn tap_in(tag: &str, ns: NetNs, socket: &Path, n: u8, extra: &[&str]) -> Pod {
        Self::tap_wrapped(tag, ns, socket, n, extra, &[])
    }

    /// Like [`Pod::tap_in`], the agent started through `wrapper` (a command prefix).
    pub fn tap_wrapped(
        tag: &str,
        ns: NetNs,
        socket: &Path,
        n: u8,
        extra: &[&str],
        wrapper: &[&str],
    ) -> Pod {
        let ip = Ipv4Addr::new(10, 66, 0, n);
        let mac = format!("02:a6:00:00:00:{n:02x}");
        let sock = socket.to_string_lossy().into_owned();
        let cidr = format!("{ip}/24");
        let mut args = vec![
            "--socket", &sock, "--ifname", "eth1", "--mac", &mac, "--ip", &cidr,
        ];
        let nsname = ns.name().to_string();
        args.extend_from_slice(&["tap", "--netns", &nsname]);
        // After the subcommand: tap options and global options alike.
        args.extend_from_slice(extra);
        let mut agent = Agent::spawn_wrapped(tag, wrapper, &args);
        agent.wait_link_up(0);
        Pod { agent, ns, ip }
    }

    /// `ping -c COUNT` from this pod; returns (received, output).
    pub fn ping(&self, dst: Ipv4Addr, count: u32) -> (u32, String) {
        let c = count.to_string();
        let d = dst.to_string();
        let o = self
            .ns
            .exec(&["ping", "-c", &c, "-i", "0.2", "-W", "2", &d]);
        let text = out_text(&o);
        (received(&text), text)
    }

    /// True while `eth1` exists in the pod.
    pub fn has_tap(&self) -> bool {
        self.ns
            .exec(&["ip", "link", "show", "dev", "eth1"])
            .status
            .success()
    }
}

pub fn out_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// "N received" from ping's summary (0 when absent).
pub fn received(ping_out: &str) -> u32 {
    ping_out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Pings until one reply comes back or `timeout` passes; returns the time it took.
pub fn ping_until_reply(pod: &Pod, dst: Ipv4Addr, timeout: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if pod.ping(dst, 1).0 == 1 {
            return Some(t0.elapsed());
        }
    }
    None
}

/// Runs `f` in a new thread that first enters the network namespace at `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let f_ns = File::open(ns).unwrap_or_else(|e| panic!("open {}: {e}", ns.display()));
    std::thread::spawn(move || {
        nix::sched::setns(&f_ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns: {e}"));
        f()
    })
}

/// Deterministic test stream: byte i of the stream.
fn pattern(chunk: &mut [u8], offset: u64) {
    for (i, b) in chunk.iter_mut().enumerate() {
        let x = offset + i as u64;
        *b = (x ^ (x >> 8) ^ (x >> 17)).wrapping_mul(31) as u8;
    }
}

/// Sends `total` bytes of a known pattern from pod `a` to pod `b` over TCP; the receiver checks
/// every byte. Returns (bytes received and verified, seconds).
pub fn tcp_transfer(a: &Pod, b: &Pod, total: u64, port: u16) -> (u64, f64) {
    let addr = SocketAddr::from((b.ip, port));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = in_netns(&b.ns.path(), move || -> Result<u64, String> {
        let l = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
        let _ = ready_tx.send(());
        let (mut s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut buf = vec![0u8; 64 * 1024];
        let mut want = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = s
                .read(&mut buf)
                .map_err(|e| format!("read after {got} bytes: {e}"))?;
            if n == 0 {
                break;
            }
            pattern(&mut want[..n], got);
            if buf[..n] != want[..n] {
                let i = buf[..n]
                    .iter()
                    .zip(&want[..n])
                    .position(|(x, y)| x != y)
                    .unwrap_or(0);
                return Err(format!("byte {} differs", got + i as u64));
            }
            got += n as u64;
        }
        s.write_all(&got.to_be_bytes())
            .map_err(|e| format!("ack: {e}"))?;
        Ok(got)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server did not start");
    let client = in_netns(&a.ns.path(), move || -> Result<f64, String> {
        let t0 = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_write_timeout(Some(Duration::from_secs(30))).ok();
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < total {
            let n = ((total - sent) as usize).min(buf.len());
            pattern(&mut buf[..n], sent);
            s.write_all(&buf[..n])
                .map_err(|e| format!("write after {sent} bytes: {e}"))?;
            sent += n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))?;
        let mut ack = [0u8; 8];
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s.read_exact(&mut ack).map_err(|e| format!("ack: {e}"))?;
        if u64::from_be_bytes(ack) != total {
            return Err(format!("server counted {} bytes", u64::from_be_bytes(ack)));
        }
        Ok(t0.elapsed().as_secs_f64())
    });
    let secs = client
        .join()
        .expect("client thread")
        .unwrap_or_else(|e| panic!("client: {e}"));
    let got = server
        .join()
        .expect("server thread")
        .unwrap_or_else(|e| panic!("server: {e}"));
    (got, secs)
}
