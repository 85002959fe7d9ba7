//! [`KernelPort`]: one Linux interface through an AF_PACKET socket with TPACKET_V3 rings.
//!
//! - `new` opens the socket, sets up and maps the rings and binds before returning, so a
//!   missing interface or a missing privilege fails at `port add` and nothing stays behind.
//! - `restore` (uswitchd start, from the state file) is `new`, except that a missing
//!   interface gives a port that is down (`state` = `no-interface`) and opens itself when the
//!   interface appears, like an interface that disappears later (a NIC whose driver loads
//!   after uswitchd, a veth created by a later unit).
//! - `poll_control` checks the interface every [`CHECK_EVERY`]: index (gone or re-created →
//!   close, then reopen when it is back, with backoff), flags (link up = `IFF_UP` and
//!   `IFF_RUNNING`), MTU, and the kernel's receive drops (`PACKET_STATISTICS`), which are added
//!   to `drop_no_buffer` of the rx queue.
//! - Buffer ownership as for every port (see `crate::port`): rx frames stay in the kernel's
//!   ring blocks from `rx_burst` to `rx_release`; `tx_burst` copies into ring frames.
//! - Counters survive reopen; `connects`/`disconnects` count link transitions.
use crate::config::KernelConfig;
use crate::kernel::ring::{Geometry, RingMap, RxRing, TxRing};
use crate::kernel::{sys, KernelError};
use crate::port::{Drop, PktRef, Port, PortInfo, PortStats, QueueStats, TxItem};
use serde_json::{json, Map};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// How often the interface is checked.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Block retire timeout in ms (how long a partly filled rx block waits for more frames).
const RETIRE_TOV_MS: u32 = 1;
const ARPHRD_ETHER: u16 = 1;

/// An open socket with its rings. Field order is drop order: unmap, then close.
struct Open {
    map: RingMap,
    rx: RxRing,
    tx: TxRing,
    fd: OwnedFd,
    ifindex: i32,
    /// A tx kick failed since the last check (logged once per check).
    kick_errors: u64,
}

pub struct KernelPort {
    name: String,
    cfg: KernelConfig,
    geo: Geometry,
    /// For interface ioctls, also while closed.
    ctl: OwnedFd,
    open: Option<Open>,
    running: bool,
    mtu: u32,
    mac: Option<[u8; 6]>,
    next_check: Option<Instant>,
    next_open: Option<Instant>,
    backoff: Duration,
    state: &'static str,
    stats: QueueStats,
    kernel_drops: u64,
    kernel_freezes: u64,
    kick_errors: u64,
    control_errors: u64,
    connects: u64,
    disconnects: u64,
    last_disconnect_reason: Option<String>,
}

fn sys_err(iface: &str, what: &'static str, err: io::Error) -> KernelError {
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => KernelError::NotPermitted(iface.to_string()),
        Some(libc::ENODEV) | Some(libc::ENXIO) => KernelError::NoSuchInterface(iface.to_string()),
        _ => KernelError::Sys {
            iface: iface.to_string(),
            what,
            err,
        },
    }
}

/// Opens the socket on `iface` (index `ifindex`) with both rings mapped.
fn open(cfg: &KernelConfig, geo: &Geometry, ifindex: i32) -> Result<Open, KernelError> {
    let iface = cfg.iface.as_str();
    let e = |what: &'static str| move |err: io::Error| sys_err(iface, what, err);
    let fd = sys::packet_socket().map_err(e("socket(AF_PACKET)"))?;
    let s = fd.as_fd();
    sys::set_int(
        s,
        libc::PACKET_VERSION,
        libc::tpacket_versions::TPACKET_V3 as i32,
    )
    .map_err(e("PACKET_VERSION TPACKET_V3"))?;
    sys::set_int(s, libc::PACKET_VNET_HDR, 1).map_err(e("PACKET_VNET_HDR"))?;
    sys::set_int(s, libc::PACKET_LOSS, 1).map_err(e("PACKET_LOSS"))?;
    sys::set_int(s, libc::PACKET_IGNORE_OUTGOING, 1).map_err(e("PACKET_IGNORE_OUTGOING"))?;
    if cfg.qdisc_bypass {
        sys::set_int(s, libc::PACKET_QDISC_BYPASS, 1).map_err(e("PACKET_QDISC_BYPASS"))?;
    }
    let rx = libc::tpacket_req3 {
        tp_block_size: geo.rx_block_size as u32,
        tp_block_nr: geo.rx_blocks as u32,
        tp_frame_size: geo.tx_frame_size as u32,
        tp_frame_nr: (geo.rx_bytes() / geo.tx_frame_size) as u32,
        tp_retire_blk_tov: RETIRE_TOV_MS,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    sys::set_ring(s, libc::PACKET_RX_RING, &rx).map_err(e("PACKET_RX_RING"))?;
    let tx = libc::tpacket_req3 {
        tp_block_size: geo.tx_block_size as u32,
        tp_block_nr: (geo.tx_bytes() / geo.tx_block_size) as u32,
        tp_frame_size: geo.tx_frame_size as u32,
        tp_frame_nr: geo.tx_frames as u32,
        tp_retire_blk_tov: 0,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    sys::set_ring(s, libc::PACKET_TX_RING, &tx).map_err(e("PACKET_TX_RING"))?;
    let map = RingMap::map(s, geo.rx_bytes() + geo.tx_bytes()).map_err(e("mmap rings"))?;
    sys::bind(s, ifindex).map_err(e("bind"))?;
    sys::add_promisc(s, ifindex).map_err(e("PACKET_ADD_MEMBERSHIP promisc"))?;
    Ok(Open {
        map,
        rx: RxRing::new(geo),
        tx: TxRing::new(geo),
        fd,
        ifindex,
        kick_errors: 0,
    })
}

impl KernelPort {
    /// Opens the port on `cfg.iface` (see the module docs for the errors).
    pub fn new(name: &str, cfg: &KernelConfig) -> Result<KernelPort, KernelError> {
        crate::config::validate_ifname(&cfg.iface).map_err(|msg| KernelError::Sys {
            iface: cfg.iface.clone(),
            what: "interface name",
            err: io::Error::new(io::ErrorKind::InvalidInput, msg),
        })?;
        let iface = cfg.iface.as_str();
        let ctl = sys::ioctl_socket().map_err(|e| sys_err(iface, "socket(AF_INET)", e))?;
        let ifindex = sys::ifindex(ctl.as_fd(), iface).map_err(|e| sys_err(iface, "ifindex", e))?;
        let (hw, mac) = sys::hwaddr(ctl.as_fd(), iface).map_err(|e| sys_err(iface, "hwaddr", e))?;
        if hw != ARPHRD_ETHER {
            return Err(KernelError::NotEthernet {
                iface: iface.to_string(),
                hw,
            });
        }
        let mut p = KernelPort::closed(name, cfg, ctl);
        p.open = Some(open(cfg, &p.geo, ifindex)?);
        p.mac = Some(mac);
        p.refresh(Instant::now());
        tracing::info!(
            port = name,
            iface,
            ifindex,
            frame_size = cfg.frame_size,
            up = p.running,
            "kernel port open"
        );
        Ok(p)
    }

    /// Like [`Self::new`], but a missing interface is not an error: the port starts down
    /// (`no-interface`) and opens itself when the interface shows up. Every other error
    /// (bad name, no privilege, not Ethernet) is returned as by `new`.
    pub fn restore(name: &str, cfg: &KernelConfig) -> Result<KernelPort, KernelError> {
        match KernelPort::new(name, cfg) {
            Err(KernelError::NoSuchInterface(iface)) => {
                let ctl = sys::ioctl_socket().map_err(|e| sys_err(&iface, "socket(AF_INET)", e))?;
                let mut p = KernelPort::closed(name, cfg, ctl);
                p.state = "no-interface";
                p.next_open = Some(Instant::now());
                p.last_disconnect_reason =
                    Some(format!("interface {iface} not present at startup"));
                tracing::warn!(port = name, iface = %iface, "kernel port restored without its interface; it opens when the interface appears");
                Ok(p)
            }
            r => r,
        }
    }

    /// A port with no socket yet (link down).
    fn closed(name: &str, cfg: &KernelConfig, ctl: OwnedFd) -> KernelPort {
        KernelPort {
            name: name.to_string(),
            cfg: cfg.clone(),
            geo: Geometry::for_frame_size(cfg.frame_size),
            ctl,
            open: None,
            running: false,
            mtu: 1500,
            mac: None,
            next_check: None,
            next_open: None,
            backoff: BACKOFF_MIN,
            state: "down",
            stats: QueueStats::default(),
            kernel_drops: 0,
            kernel_freezes: 0,
            kick_errors: 0,
            control_errors: 0,
            connects: 0,
            disconnects: 0,
            last_disconnect_reason: None,
        }
    }

    fn set_running(&mut self, up: bool, why: &str) {
        if up == self.running {
            return;
        }
        self.running = up;
        if up {
            self.connects += 1;
            tracing::info!(port = %self.name, iface = %self.cfg.iface, "kernel port link up");
        } else {
            self.disconnects += 1;
            self.last_disconnect_reason = Some(why.to_string());
            tracing::warn!(port = %self.name, iface = %self.cfg.iface, reason = why, "kernel port link down");
        }
    }

    fn close(&mut self, why: &str, now: Instant) {
        self.set_running(false, why);
        if self.open.take().is_some() {
            tracing::info!(port = %self.name, iface = %self.cfg.iface, reason = why, "kernel port socket closed");
        }
        self.next_open = Some(now);
        self.backoff = BACKOFF_MIN;
    }

    /// The interface check of `poll_control` (also run once by `new`).
    fn refresh(&mut self, now: Instant) {
        let iface = self.cfg.iface.clone();
        let idx = match sys::ifindex(self.ctl.as_fd(), &iface) {
            Ok(i) => i,
            Err(_) => {
                self.state = "no-interface";
                self.close(&format!("interface {iface} disappeared"), now);
                return;
            }
        };
        if self.open.as_ref().is_some_and(|o| o.ifindex != idx) {
            self.close(&format!("interface {iface} was re-created"), now);
        }
        if self.open.is_none() {
            if self.next_open.is_some_and(|t| now < t) {
                return;
            }
            match sys::hwaddr(self.ctl.as_fd(), &iface) {
                Ok((hw, mac)) if hw == ARPHRD_ETHER => self.mac = Some(mac),
                Ok((hw, _)) => {
                    self.state = "not-ethernet";
                    self.retry_later(&format!("interface {iface} has hardware type {hw}"), now);
                    return;
                }
                Err(_) => {}
            }
            match open(&self.cfg, &self.geo, idx) {
                Ok(o) => {
                    tracing::info!(port = %self.name, iface = %iface, ifindex = idx, "kernel port reopened");
                    self.open = Some(o);
                    self.next_open = None;
                    self.backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    self.state = "open-failed";
                    self.retry_later(&e.to_string(), now);
                    return;
                }
            }
        }
        if let Ok(m) = sys::mtu(self.ctl.as_fd(), &iface) {
            self.mtu = m;
        }
        let flags = sys::ifflags(self.ctl.as_fd(), &iface).unwrap_or(0);
        let up = flags & libc::IFF_UP != 0;
        let running = up && flags & libc::IFF_RUNNING != 0;
        self.state = match (up, running) {
            (true, true) => "up",
            (true, false) => "no-carrier",
            _ => "admin-down",
        };
        let why = if up {
            format!("interface {iface} lost carrier")
        } else {
            format!("interface {iface} set down")
        };
        self.set_running(running, &why);
        if let Some(o) = self.open.as_mut() {
            if let Ok(s) = sys::stats(o.fd.as_fd()) {
                self.kernel_drops += u64::from(s.tp_drops);
                self.kernel_freezes += u64::from(s.tp_freeze_q_cnt);
                self.stats.drop_no_buffer += u64::from(s.tp_drops);
            }
            if o.kick_errors > 0 {
                tracing::debug!(port = %self.name, errors = o.kick_errors, "tx kicks failed");
                self.kick_errors += o.kick_errors;
                o.kick_errors = 0;
            }
        }
    }

    fn retry_later(&mut self, why: &str, now: Instant) {
        if self.next_open.is_none() || self.backoff == BACKOFF_MIN {
            tracing::warn!(port = %self.name, "kernel port cannot open: {why}");
        }
        self.control_errors += 1;
        self.last_disconnect_reason = Some(why.to_string());
        self.next_open = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn usable(&mut self) -> Option<&mut Open> {
        if self.running {
            self.open.as_mut()
        } else {
            None
        }
    }
}

impl Port for KernelPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll_control(&mut self, now: Instant) {
        if self.next_check.is_some_and(|t| now < t) {
            return;
        }
        self.next_check = Some(now + CHECK_EVERY);
        self.refresh(now);
    }

    fn link_up(&self) -> bool {
        self.running && self.open.is_some()
    }

    fn rx_queues(&self) -> usize {
        usize::from(self.link_up())
    }

    fn tx_queues(&self) -> usize {
        usize::from(self.link_up())
    }

    fn rx_burst(&mut self, q: usize, out: &mut [PktRef]) -> usize {
        if q != 0 || !self.running {
            return 0;
        }
        let Some(o) = self.open.as_mut() else {
            return 0;
        };
        o.rx.burst(&o.map, out, &mut self.stats)
    }

    fn rx_release(&mut self, _q: usize) {
        if let Some(o) = self.open.as_mut() {
            o.rx.release(&o.map);
        }
    }

    fn tx_burst(&mut self, _q: usize, pkts: &[PktRef], items: &[TxItem]) -> usize {
        let mtu = self.mtu;
        let Some(o) = self.usable() else {
            self.stats.count_drop(Drop::NoBuffer, items.len() as u64);
            return 0;
        };
        let mut st = QueueStats::default();
        let sent = o.tx.burst(&o.map, pkts, items, mtu, &mut st);
        if sent > 0 && sys::kick(o.fd.as_fd()).is_err() {
            o.kick_errors += 1;
        }
        self.stats.add(&st);
        sent
    }

    fn stats(&self) -> PortStats {
        PortStats {
            name: self.name.clone(),
            link_up: self.link_up(),
            total: self.stats,
            queues: vec![self.stats],
            control_errors: self.control_errors,
            connects: self.connects,
            disconnects: self.disconnects,
            last_disconnect_reason: self.last_disconnect_reason.clone(),
        }
    }

    fn clear_stats(&mut self) {
        self.stats = QueueStats::default();
        self.kernel_drops = 0;
        self.kernel_freezes = 0;
        self.kick_errors = 0;
        self.control_errors = 0;
        self.connects = 0;
        self.disconnects = 0;
    }

    fn info(&self) -> PortInfo {
        let mut d = Map::new();
        d.insert("iface".into(), json!(self.cfg.iface));
        d.insert(
            "ifindex".into(),
            self.open.as_ref().map_or(json!(null), |o| json!(o.ifindex)),
        );
        if let Some(m) = self.mac {
            let s = m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>();
            d.insert("mac".into(), json!(s.join(":")));
        }
        d.insert("state".into(), json!(self.state));
        d.insert("mtu".into(), json!(self.mtu));
        d.insert("frame_size".into(), json!(self.cfg.frame_size));
        d.insert("max_frame".into(), json!(self.geo.max_frame()));
        d.insert("qdisc_bypass".into(), json!(self.cfg.qdisc_bypass));
        d.insert("rx_ring_bytes".into(), json!(self.geo.rx_bytes()));
        d.insert("rx_blocks".into(), json!(self.geo.rx_blocks));
        d.insert("tx_frames".into(), json!(self.geo.tx_frames));
        d.insert("memory".into(), json!("kernel-ring"));
        d.insert("kernel_drops".into(), json!(self.kernel_drops));
        d.insert("kernel_freezes".into(), json!(self.kernel_freezes));
        let rejected = self.open.as_ref().map_or(0, |o| o.tx.rejected);
        d.insert("tx_rejected".into(), json!(rejected));
        d.insert("tx_kick_errors".into(), json!(self.kick_errors));
        PortInfo {
            name: self.name.clone(),
            kind: "kernel".into(),
            link_up: self.link_up(),
            peer_name: None,
            peer_version: None,
            details: d,
        }
    }

    fn count_no_route(&mut self, _q: usize, n: u64) {
        self.stats.drop_no_route += n;
    }
}
