//! Driving DPDK `dpdk-testpmd` as a test peer: build a command line, run it interactively,
//! send exact packet counts, read port counters.
//!
//! How it works (findings in `docs/testing.md`):
//! - testpmd runs with `-i` and a stdin pipe under `stdbuf -oL` (its `printf` output is
//!   block-buffered on a pipe otherwise and would only show up at exit). Each command is
//!   written to stdin and its output is everything up to the next `testpmd> ` prompt.
//! - The forward mode defaults to `rxonly`: the process counts what it receives and never
//!   forwards anything back. Packets are *sent* with `start tx_first N`, which transmits exactly
//!   N bursts of txonly packets per forwarding stream before forwarding starts, and returns only
//!   when they are handed to the driver. [`Testpmd::send_paced`] repeats
//!   `stop` / `start tx_first N` in rounds with a pause, which paces the sender so the switch
//!   never has to drop.
//! - Port counters come from `show port stats N`. A memif port's counters reset when its peer
//!   disconnects: read them while the link is up.
//! - DPDK 22.11 memif sockets are *abstract* by default; the builder passes
//!   `socket-abstract=no` for filesystem paths and `yes` for `@name`.
//! - `--no-flush-rx`: otherwise each `start` first drains and discards the rx queues (a
//!   pcap port's frames would be gone, and received packets between rounds too).
//! - Every instance gets a unique `--file-prefix` starting with [`crate::DPDK_PREFIX`],
//!   `-m 64`, and `--in-memory` (no hugepage files, no multi-process socket) when enough
//!   hugepages are free, else `--no-huge --no-shconf` (the two memory options exclude each
//!   other). Hugepage files of its prefix are removed on drop anyway.
use crate::process::ProcGuard;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

const PROMPT: &str = "testpmd> ";

/// Memory per testpmd (`-m`), MiB: the 8192-mbuf pool (~18 MiB) plus rings fit easily.
const MEM_MB: u64 = 64;

/// Counters of one testpmd port (`show port stats N`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_missed: u64,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub rx_nombuf: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_bytes: u64,
}

/// Command line of a testpmd instance; [`TestpmdBuilder::start`] runs it.
#[derive(Debug, Clone)]
pub struct TestpmdBuilder {
    name: String,
    vdevs: Vec<String>,
    n_memif: u32,
    n_pcap: u32,
    n_virtio: u32,
    /// More EAL arguments (before `--`).
    eal: Vec<String>,
    lcores: String,
    forward_mode: String,
    queues: u16,
    burst: u16,
    txpkts: Option<String>,
    eth_peers: Vec<(u16, String)>,
    mbuf_size: Option<u32>,
    max_pkt_len: Option<u32>,
    total_mbufs: u32,
    multi_flow: bool,
    extra: Vec<String>,
    /// Server socket paths to clear of a dead predecessor's file before starting.
    stale_sockets: Vec<String>,
}

impl TestpmdBuilder {
    /// `name` appears in the file prefix and the log file name.
    pub fn new(name: &str) -> Self {
        TestpmdBuilder {
            name: name.to_string(),
            vdevs: Vec::new(),
            n_memif: 0,
            n_pcap: 0,
            n_virtio: 0,
            eal: Vec::new(),
            lcores: "0@1,1@1".into(),
            forward_mode: "rxonly".into(),
            queues: 1,
            burst: 32,
            txpkts: None,
            eth_peers: Vec::new(),
            mbuf_size: None,
            max_pkt_len: None,
            total_mbufs: 8192,
            multi_flow: false,
            extra: Vec::new(),
            stale_sockets: Vec::new(),
        }
    }

    /// Adds a memif port. `role` is "client" or "server"; `socket` a filesystem path or `@name`;
    /// `extra` more devargs such as `"mac=02:00:00:00:00:01"`, `"bsize=2048"`, `"rsize=10"`.
    pub fn memif(mut self, role: &str, socket: &str, id: u32, extra: &[&str]) -> Self {
        if role == "server" && !socket.starts_with('@') {
            self.stale_sockets.push(socket.into());
        }
        let (path, abs) = match socket.strip_prefix('@') {
            Some(name) => (name, "yes"),
            None => (socket, "no"),
        };
        let mut v = format!(
            "net_memif{},role={role},socket={path},socket-abstract={abs},id={id}",
            self.n_memif
        );
        for e in extra {
            v.push(',');
            v.push_str(e);
        }
        self.n_memif += 1;
        self.vdevs.push(v);
        self
    }
    /// memif client port (the peer of a uswitch server port) with a fixed MAC.
    pub fn memif_client(self, socket: &str, mac: &str) -> Self {
        let m = format!("mac={mac}");
        self.memif("client", socket, 0, &[&m])
    }
    /// memif server port (the peer of a uswitch client port) with a fixed MAC.
    pub fn memif_server(self, socket: &str, mac: &str) -> Self {
        let m = format!("mac={mac}");
        self.memif("server", socket, 0, &[&m])
    }
    /// A DPDK `virtio_user` port (vhost-user frontend) on `path` with a fixed MAC; `extra`
    /// more devargs such as `"server=1"`, `"queues=2"`, `"queue_size=256"`. Adds
    /// `--single-file-segments` (vhost-user carries at most 8 memory regions).
    pub fn virtio_user(mut self, path: &str, mac: &str, extra: &[&str]) -> Self {
        let mut v = format!("net_virtio_user{},path={path},mac={mac}", self.n_virtio);
        for e in extra {
            v.push(',');
            v.push_str(e);
        }
        self.n_virtio += 1;
        self.vdevs.push(v);
        if !self.eal.iter().any(|a| a == "--single-file-segments") {
            self.eal.push("--single-file-segments".into());
        }
        self
    }
    /// An extra EAL argument (before `--`).
    pub fn eal(mut self, a: &str) -> Self {
        self.eal.push(a.into());
        self
    }
    /// A pcap port: frames of `rx` are received once (then nothing), frames sent to it are
    /// written to `tx` (flushed when testpmd quits).
    pub fn pcap(mut self, rx: &std::path::Path, tx: &std::path::Path) -> Self {
        self.vdevs.push(format!(
            "net_pcap{},rx_pcap={},tx_pcap={}",
            self.n_pcap,
            rx.display(),
            tx.display()
        ));
        self.n_pcap += 1;
        self
    }
    /// `--lcores` value (default `0@1,1@1`: main and forwarding lcore both on CPU 1, leaving
    /// CPU 0 to uswitchd).
    pub fn lcores(mut self, l: &str) -> Self {
        self.lcores = l.into();
        self
    }
    pub fn forward_mode(mut self, m: &str) -> Self {
        self.forward_mode = m.into();
        self
    }
    /// rx and tx queues per port.
    pub fn queues(mut self, n: u16) -> Self {
        self.queues = n;
        self
    }
    pub fn burst(mut self, n: u16) -> Self {
        self.burst = n;
        self
    }
    /// txonly packet segment lengths, e.g. "64" or "2048,2048,2048,2048,856" (a chained
    /// 9000-byte packet).
    pub fn txpkts(mut self, s: &str) -> Self {
        self.txpkts = Some(s.into());
        self
    }
    /// Destination MAC of txonly packets sent on `port`.
    pub fn eth_peer(mut self, port: u16, mac: &str) -> Self {
        self.eth_peers.push((port, mac.into()));
        self
    }
    pub fn mbuf_size(mut self, n: u32) -> Self {
        self.mbuf_size = Some(n);
        self
    }
    pub fn max_pkt_len(mut self, n: u32) -> Self {
        self.max_pkt_len = Some(n);
        self
    }
    /// Vary the source IP/port per packet (`--txonly-multi-flow`): spreads over queues.
    pub fn multi_flow(mut self) -> Self {
        self.multi_flow = true;
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.into());
        self
    }

    /// The full argument list (after the program name).
    pub fn args(&self, prefix: &str) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--lcores".into(),
            self.lcores.clone(),
            "--no-pci".into(),
            "--file-prefix".into(),
            prefix.into(),
            "-m".into(),
            MEM_MB.to_string(),
            "--log-level".into(),
            "pmd.net.memif:info".into(),
        ];
        let no_huge = std::env::var_os("USWITCH_E2E_NO_HUGE").is_some_and(|v| v == "1");
        if !no_huge && crate::hugetlbfs_mounted() && crate::free_hugepages() >= MEM_MB / 2 + 16 {
            a.push("--in-memory".into());
        } else {
            // --no-huge implies legacy memory, which --in-memory refuses; --no-shconf keeps
            // /var/run/dpdk clean instead.
            a.push("--no-huge".into());
            a.push("--no-shconf".into());
        }
        for v in &self.vdevs {
            a.push("--vdev".into());
            a.push(v.clone());
        }
        a.extend(self.eal.iter().cloned());
        a.push("--".into());
        a.push("-i".into());
        a.push(format!("--forward-mode={}", self.forward_mode));
        a.push(format!("--rxq={}", self.queues));
        a.push(format!("--txq={}", self.queues));
        a.push("--nb-cores=1".into());
        // Without this, every `start` drains (and discards) the rx queues first: frames of a
        // pcap port would be gone before forwarding begins.
        a.push("--no-flush-rx".into());
        a.push(format!("--burst={}", self.burst));
        a.push(format!("--total-num-mbufs={}", self.total_mbufs));
        if let Some(t) = &self.txpkts {
            a.push(format!("--txpkts={t}"));
        }
        for (p, m) in &self.eth_peers {
            a.push(format!("--eth-peer={p},{m}"));
        }
        if let Some(m) = self.mbuf_size {
            a.push(format!("--mbuf-size={m}"));
        }
        if let Some(m) = self.max_pkt_len {
            a.push(format!("--max-pkt-len={m}"));
        }
        if self.multi_flow {
            a.push("--txonly-multi-flow".into());
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts testpmd and waits for its first prompt (ports configured).
    pub fn start(&self) -> Result<Testpmd, String> {
        // A killed DPDK memif server leaves its socket file, and DPDK will not bind over it
        // ("Address already in use"): remove it when nobody listens there any more.
        for p in &self.stale_sockets {
            remove_stale_socket(std::path::Path::new(p));
        }
        let prefix = format!(
            "{}-{}-{}-{}",
            crate::DPDK_PREFIX,
            self.name,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL").arg("dpdk-testpmd").args(self.args(&prefix));
        let proc = ProcGuard::spawn(&format!("testpmd-{}", self.name), cmd, true)
            .map_err(|e| e.to_string())?;
        let mut t = Testpmd {
            proc,
            prefix,
            read_pos: 0,
        };
        let end = t.proc.wait_output(0, PROMPT, Duration::from_secs(60))?;
        t.read_pos = end;
        Ok(t)
    }
}

/// A running interactive testpmd; killed by PID on drop, its hugepage files removed.
pub struct Testpmd {
    proc: ProcGuard,
    prefix: String,
    /// Output offset just past the last prompt seen.
    read_pos: usize,
}

impl Testpmd {
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn proc(&mut self) -> &mut ProcGuard {
        &mut self.proc
    }

    /// Runs one interactive command and returns its output (up to the next prompt).
    pub fn cmd(&mut self, line: &str) -> Result<String, String> {
        self.cmd_timeout(line, Duration::from_secs(30))
    }

    pub fn cmd_timeout(&mut self, line: &str, timeout: Duration) -> Result<String, String> {
        self.proc.send_line(line).map_err(|e| {
            format!(
                "testpmd {}: write {line:?}: {e}\n{}",
                self.prefix,
                self.proc.tail(2000)
            )
        })?;
        let start = self.read_pos;
        let end = self.proc.wait_output(start, PROMPT, timeout)?;
        self.read_pos = end;
        Ok(self.proc.output_range(start, end))
    }

    /// Waits until every port reports `Link status: up`.
    pub fn wait_link_up(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.cmd("show port info all")?;
            let up = out.matches("Link status: up").count();
            let down = out.matches("Link status: down").count();
            if up > 0 && down == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "testpmd {}: link not up within {timeout:?}\n{out}",
                    self.prefix
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True when port `port` reports link up.
    pub fn link_up(&mut self, port: u16) -> bool {
        self.cmd(&format!("show port info {port}"))
            .map(|o| o.contains("Link status: up"))
            .unwrap_or(false)
    }

    /// `port stop N` + `port start N`. A DPDK memif *client* connects only when its port
    /// starts and never retries; this makes it connect again (e.g. after uswitchd restarted).
    /// Forwarding is stopped first (testpmd refuses otherwise) and left stopped.
    pub fn restart_port(&mut self, port: u16) -> Result<(), String> {
        self.cmd("stop")?;
        self.cmd(&format!("port stop {port}"))?;
        self.cmd(&format!("port start {port}"))?;
        Ok(())
    }

    /// Polls port `port` alone for a moment in rxonly mode, then restores `mode` and the port
    /// list `all` (e.g. "0,1"), leaving forwarding stopped. A DPDK memif client posts its
    /// receive buffers (refills the S2C ring) only inside rx_burst, so until it has polled once
    /// the switch sees a full ring and drops. This primes the ring without reading a pcap
    /// port's frames.
    pub fn prime_rx(&mut self, port: u16, all: &str, mode: &str) -> Result<(), String> {
        self.cmd("set fwd rxonly")?;
        self.cmd(&format!("set portlist {port}"))?;
        self.cmd("start")?;
        std::thread::sleep(Duration::from_millis(100));
        self.cmd("stop")?;
        self.cmd(&format!("set portlist {all}"))?;
        self.cmd(&format!("set fwd {mode}"))?;
        Ok(())
    }

    /// Starts forwarding (rxonly: starts counting received packets).
    pub fn start_fwd(&mut self) -> Result<(), String> {
        self.cmd("start").map(|_| ())
    }

    pub fn stop_fwd(&mut self) -> Result<(), String> {
        self.cmd("stop").map(|_| ())
    }

    /// Sends `bursts` bursts per stream right away (`start tx_first N`); forwarding stays
    /// started afterwards.
    pub fn tx_first(&mut self, bursts: u32) -> Result<(), String> {
        let out = self.cmd(&format!("start tx_first {bursts}"))?;
        if out.contains("already started") {
            return Err(format!(
                "testpmd {}: forwarding already started; call stop_fwd first",
                self.prefix
            ));
        }
        Ok(())
    }

    /// Sends `rounds` rounds of `bursts_per_round` bursts (per stream), pausing `pause`
    /// between rounds; forwarding (receive counting) is running at the end.
    pub fn send_paced(
        &mut self,
        rounds: u32,
        bursts_per_round: u32,
        pause: Duration,
    ) -> Result<(), String> {
        for _ in 0..rounds {
            self.cmd("stop")?;
            self.tx_first(bursts_per_round)?;
            std::thread::sleep(pause);
        }
        Ok(())
    }

    /// Counters of one port (`show port stats N`).
    pub fn stats(&mut self, port: u16) -> Result<PortCounters, String> {
        let out = self.cmd(&format!("show port stats {port}"))?;
        parse_port_stats(&out)
            .ok_or_else(|| format!("testpmd {}: cannot parse port stats:\n{out}", self.prefix))
    }

    /// Clears the counters of all ports.
    pub fn clear_stats(&mut self) -> Result<(), String> {
        self.cmd("clear port stats all").map(|_| ())
    }

    /// Waits until port counters satisfy `f` (counters settle after traffic stops).
    pub fn wait_stats(
        &mut self,
        port: u16,
        timeout: Duration,
        mut f: impl FnMut(&PortCounters) -> bool,
    ) -> Result<PortCounters, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats(port)?;
            if f(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "testpmd {}: port {port} counters never matched: {s:?}",
                    self.prefix
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Quits cleanly (flushes pcap output files); kills after 10 s.
    pub fn quit(mut self) -> Result<(), String> {
        let _ = self.proc.send_line("stop");
        let _ = self.proc.send_line("quit");
        self.proc.close_stdin();
        match self.proc.wait_timeout(Duration::from_secs(10)) {
            Some(_) => Ok(()),
            None => Err(format!(
                "testpmd {} did not quit\n{}",
                self.prefix,
                self.proc.tail(2000)
            )),
        }
    }

    /// SIGKILL (a crashing peer).
    pub fn kill9(&mut self) {
        self.proc.kill9();
        crate::remove_hugepage_files(&self.prefix);
    }

    /// Output tail for failure messages.
    pub fn tail(&self) -> String {
        self.proc.tail(3000)
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        self.proc.kill9();
        crate::remove_hugepage_files(&self.prefix);
    }
}

/// Removes a Unix socket file nobody listens on (connect refused).
fn remove_stale_socket(p: &std::path::Path) {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    if !p.exists() {
        return;
    }
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return;
    };
    let Ok(addr) = UnixAddr::new(p) else {
        return;
    };
    if connect(fd.as_raw_fd(), &addr) == Err(nix::errno::Errno::ECONNREFUSED) {
        let _ = std::fs::remove_file(p);
    }
}

/// Parses the `show port stats` block (the first one in `out`).
pub fn parse_port_stats(out: &str) -> Option<PortCounters> {
    let block = &out[out.find("NIC statistics for port")?..];
    let get = |key: &str| -> Option<u64> {
        let i = block.find(key)? + key.len();
        block[i..].split_whitespace().next()?.parse().ok()
    };
    Some(PortCounters {
        rx_packets: get("RX-packets:")?,
        rx_missed: get("RX-missed:")?,
        rx_bytes: get("RX-bytes:")?,
        rx_errors: get("RX-errors:").unwrap_or(0),
        rx_nombuf: get("RX-nombuf:").unwrap_or(0),
        tx_packets: get("TX-packets:")?,
        tx_errors: get("TX-errors:").unwrap_or(0),
        tx_bytes: get("TX-bytes:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_port_stats() {
        let out = "show port stats 0\n\n  ######################## NIC statistics for port 0  ########################\n  RX-packets: 12         RX-missed: 1          RX-bytes:  768\n  RX-errors: 2\n  RX-nombuf:  3         \n  TX-packets: 32320      TX-errors: 0          TX-bytes:  292431360\n";
        let s = parse_port_stats(out).unwrap();
        assert_eq!(
            s,
            PortCounters {
                rx_packets: 12,
                rx_missed: 1,
                rx_bytes: 768,
                rx_errors: 2,
                rx_nombuf: 3,
                tx_packets: 32320,
                tx_errors: 0,
                tx_bytes: 292431360
            }
        );
        assert!(parse_port_stats("nothing").is_none());
    }

    #[test]
    fn memif_devargs() {
        let b = TestpmdBuilder::new("x")
            .memif_client("/tmp/a.sock", "02:00:00:00:00:01")
            .memif("server", "@abs", 3, &[]);
        let a = b.args("p");
        assert!(a.contains(
            &"net_memif0,role=client,socket=/tmp/a.sock,socket-abstract=no,id=0,mac=02:00:00:00:00:01".to_string()
        ));
        assert!(
            a.contains(&"net_memif1,role=server,socket=abs,socket-abstract=yes,id=3".to_string())
        );
    }
}
