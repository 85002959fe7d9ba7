//! [`DpdkPort`]: one DPDK ethdev as a switch port.
//!
//! - `new` initialises the EAL if needed, finds the ethdev by name (the devargs up to the
//!   first comma) or attaches it with `rte_dev_probe(devargs)`, claims it (one port per
//!   device), configures `queues` rx/tx queue pairs of `ring_size` descriptors with rx mbufs
//!   from the pool of the device's NUMA socket, enables promiscuous mode and starts it. Any
//!   failure undoes what was done (a device we attached is detached again).
//! - rx: `rte_eth_rx_burst` into a per-queue array of mbufs; each [`PktRef`] segment points at
//!   an mbuf's data (chains up to [`MAX_SEGS`]; longer or empty ones are dropped as
//!   `drop_bad_desc`). The mbufs are freed at `rx_release` (or at drop), never earlier.
//! - tx: one mbuf per packet from the same pool, the packet copied in (the one copy of
//!   `crate::port`), `rte_eth_tx_burst`; mbufs the PMD did not take are freed at once and
//!   counted `drop_ring_full`; no mbuf (pool empty) or a frame larger than one mbuf counts
//!   `drop_no_buffer`.
//! - `poll_control` (every [`CHECK_EVERY`]): registers the worker thread with the EAL once
//!   (lcore id → mempool cache), reads the link (`rte_eth_link_get_nowait`) and the device
//!   counters (`rte_eth_stats_get`); packets the device dropped (`imissed`, `ierrors`,
//!   `rx_nombuf`) are added to `drop_no_buffer` of queue 0.
//! - Drop: stops the device; one we attached is closed and detached, one that existed before
//!   (probed by the EAL from `-a`) is only stopped, so it can be added again.
use super::eal::{self, Pool};
use super::ffi::{self, RteMbuf};
use super::DpdkError;
use crate::config::DpdkConfig;
use crate::port::{
    Drop as Why, PktReader, PktRef, Port, PortInfo, PortStats, QueueStats, TxItem, MAX_BURST,
    MAX_SEGS,
};
use crate::shm::{Seg, SegMut};
use serde_json::{json, Map};
use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often link and device counters are read.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Ethdev port ids in use by a [`DpdkPort`].
static CLAIMED: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Device counters, in the shim's order.
#[derive(Clone, Copy, Debug, Default)]
struct HwStats {
    ipackets: u64,
    opackets: u64,
    ibytes: u64,
    obytes: u64,
    imissed: u64,
    ierrors: u64,
    oerrors: u64,
    rx_nombuf: u64,
}

impl HwStats {
    fn from(a: [u64; 8]) -> HwStats {
        HwStats {
            ipackets: a[0],
            opackets: a[1],
            ibytes: a[2],
            obytes: a[3],
            imissed: a[4],
            ierrors: a[5],
            oerrors: a[6],
            rx_nombuf: a[7],
        }
    }
    fn rx_drops(&self) -> u64 {
        self.imissed + self.ierrors + self.rx_nombuf
    }
}

/// The mbufs of the last rx burst of one queue.
struct RxHeld {
    mbufs: Vec<*mut RteMbuf>,
    n: usize,
}

pub struct DpdkPort {
    name: String,
    cfg: DpdkConfig,
    port_id: u16,
    /// We attached the device (so we detach it on drop).
    attached: bool,
    pool: Pool,
    socket: i32,
    nq: usize,
    rx: Vec<RxHeld>,
    tx_scratch: Vec<*mut RteMbuf>,
    stats: Vec<QueueStats>,
    hw: HwStats,
    /// Device rx drops already added to `stats[0].drop_no_buffer`.
    hw_rx_drops_seen: u64,
    link: bool,
    speed: u32,
    mac: [u8; 6],
    driver: String,
    lcore: Option<i32>,
    next_check: Option<Instant>,
    control_errors: u64,
    connects: u64,
    disconnects: u64,
    last_disconnect_reason: Option<String>,
}

// SAFETY: the raw mbuf pointers are owned by this port alone (received by it, not yet freed)
// and DPDK allows freeing an mbuf and polling a queue from any thread; the port is used by one
// thread at a time (the dataplane worker), as the `Port` trait requires.
unsafe impl Send for DpdkPort {}

fn c_string(s: &str, device: &str) -> Result<CString, DpdkError> {
    CString::new(s).map_err(|_| DpdkError::NoDevice {
        devargs: device.to_string(),
        msg: "contains a NUL byte".into(),
    })
}

fn port_by_name(name: &CString) -> Option<u16> {
    let mut id = 0u16;
    // SAFETY: the EAL is initialised (callers ran `eal::ensure`); name is a valid C string
    // and id a valid out pointer.
    let rc = unsafe { ffi::usw_port_by_name(name.as_ptr(), &mut id) };
    (rc == 0).then_some(id)
}

fn claim(id: u16, device: &str) -> Result<(), DpdkError> {
    let mut c = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    if c.contains(&id) {
        return Err(DpdkError::Busy(
            device.to_string(),
            format!("ethdev port {id} is already used by another uswitch port"),
        ));
    }
    c.push(id);
    Ok(())
}

fn unclaim(id: u16) {
    CLAIMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|x| *x != id);
}

fn close(id: u16, attached: bool) {
    // SAFETY: `id` is a port we configured or found, not used by anyone else (claimed).
    let rc = unsafe { ffi::usw_port_close(id, i32::from(attached)) };
    if rc != 0 {
        tracing::warn!(port_id = id, "closing DPDK port: {}", ffi::strerror(rc));
    }
}

impl DpdkPort {
    /// Attaches and starts the device of `cfg` (see the module docs for the steps and errors).
    pub fn new(name: &str, cfg: &DpdkConfig) -> Result<DpdkPort, DpdkError> {
        let eal = eal::ensure()?;
        let device = cfg.device().to_string();
        let cdev = c_string(&device, &cfg.devargs)?;
        let (port_id, attached) = match port_by_name(&cdev) {
            Some(id) => (id, false),
            None => {
                let cargs = c_string(&cfg.devargs, &cfg.devargs)?;
                // SAFETY: the EAL is initialised; cargs is a valid C string.
                let rc = unsafe { ffi::usw_dev_probe(cargs.as_ptr()) };
                if rc < 0 {
                    let msg = format!("rte_dev_probe failed: {}", ffi::strerror(rc));
                    return Err(if rc == -libc::EBUSY || rc == -libc::EEXIST {
                        DpdkError::Busy(device, msg)
                    } else {
                        DpdkError::NoDevice {
                            devargs: cfg.devargs.clone(),
                            msg: format!(
                                "{msg} (a vdev name such as net_tap0,iface=.., or a full PCI address bound to vfio-pci)"
                            ),
                        }
                    });
                }
                match port_by_name(&cdev) {
                    Some(id) => (id, true),
                    None => {
                        return Err(DpdkError::NoDevice {
                            devargs: cfg.devargs.clone(),
                            msg: format!(
                                "probed, but no ethdev is named {device:?} (use the full PCI address 0000:bb:dd.f)"
                            ),
                        })
                    }
                }
            }
        };
        // A claimed port id was found by name (not attached now): leave it as it is.
        claim(port_id, &device)?;
        let fail = |e: DpdkError| {
            close(port_id, attached);
            unclaim(port_id);
            e
        };
        // SAFETY: port_id is a valid ethdev (just found by name).
        let socket = unsafe { ffi::usw_port_socket(port_id) }.max(0);
        let pool = eal::pool(socket).map_err(fail)?;
        let mut what = [0 as c_char; 160];
        // SAFETY: port_id is valid and claimed by us; pool is a live mempool; `what` is a
        // writable buffer of the given length (the shim NUL-terminates with snprintf).
        let rc = unsafe {
            ffi::usw_port_setup(
                port_id,
                cfg.queues,
                cfg.ring_size,
                cfg.ring_size,
                pool.as_ptr(),
                what.as_mut_ptr(),
                what.len(),
            )
        };
        if rc != 0 {
            // SAFETY: `what` is NUL-terminated (zeroed, then written by snprintf).
            let step = unsafe { std::ffi::CStr::from_ptr(what.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            return Err(fail(DpdkError::Setup {
                device,
                what: step,
                msg: ffi::strerror(rc),
            }));
        }
        let mut mac = [0u8; 6];
        // SAFETY: port_id valid; mac is 6 writable bytes.
        unsafe { ffi::usw_port_mac(port_id, mac.as_mut_ptr()) };
        let mut drv = [0 as c_char; 64];
        // SAFETY: port_id valid; drv writable with its length given.
        unsafe { ffi::usw_port_driver(port_id, drv.as_mut_ptr(), drv.len()) };
        // SAFETY: drv is zeroed then NUL-terminated by snprintf.
        let driver = unsafe { std::ffi::CStr::from_ptr(drv.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let nq = usize::from(cfg.queues);
        let mut p = DpdkPort {
            name: name.to_string(),
            cfg: cfg.clone(),
            port_id,
            attached,
            pool,
            socket,
            nq,
            rx: (0..nq)
                .map(|_| RxHeld {
                    mbufs: vec![std::ptr::null_mut(); MAX_BURST],
                    n: 0,
                })
                .collect(),
            tx_scratch: vec![std::ptr::null_mut(); MAX_BURST],
            stats: vec![QueueStats::default(); nq],
            hw: HwStats::default(),
            hw_rx_drops_seen: 0,
            link: false,
            speed: 0,
            mac,
            driver,
            lcore: None,
            next_check: None,
            control_errors: 0,
            connects: 0,
            disconnects: 0,
            last_disconnect_reason: None,
        };
        // Counters start at zero for the port (a device found already probed may have some).
        // SAFETY: port_id valid.
        unsafe { ffi::usw_port_stats_reset(port_id) };
        p.refresh();
        tracing::info!(
            port = name, devargs = %cfg.devargs, port_id, driver = %p.driver, socket,
            queues = nq, attached, dpdk = %eal.version, up = p.link, "DPDK port started"
        );
        Ok(p)
    }

    /// Mbufs free in this port's pool (shared by the DPDK ports of its NUMA socket).
    pub fn mbuf_avail(&self) -> u32 {
        self.pool.avail()
    }

    fn refresh(&mut self) {
        let mut speed = 0u32;
        // SAFETY: port_id is ours; speed is a valid out pointer.
        let rc = unsafe { ffi::usw_port_link(self.port_id, &mut speed) };
        let up = rc == 1;
        if rc < 0 {
            self.control_errors += 1;
        }
        self.speed = speed;
        if up != self.link {
            self.link = up;
            if up {
                self.connects += 1;
                tracing::info!(port = %self.name, speed, "DPDK port link up");
            } else {
                self.disconnects += 1;
                let why = if rc < 0 {
                    format!("link query failed: {}", ffi::strerror(rc))
                } else {
                    "device reports link down".to_string()
                };
                tracing::warn!(port = %self.name, reason = %why, "DPDK port link down");
                self.last_disconnect_reason = Some(why);
            }
        }
        let mut a = [0u64; 8];
        // SAFETY: port_id is ours; `a` has the 8 slots the shim writes.
        if unsafe { ffi::usw_port_stats(self.port_id, a.as_mut_ptr()) } == 0 {
            self.hw = HwStats::from(a);
            let drops = self.hw.rx_drops();
            if drops > self.hw_rx_drops_seen {
                self.stats[0].drop_no_buffer += drops - self.hw_rx_drops_seen;
            }
            self.hw_rx_drops_seen = drops;
        }
    }

    fn free_rx(&mut self, q: usize) {
        let Some(h) = self.rx.get_mut(q) else { return };
        if h.n > 0 {
            // SAFETY: the first `n` entries are mbufs received by the last burst and not yet
            // freed; they are freed exactly once here (n reset below).
            unsafe { ffi::usw_mbuf_free_bulk(h.mbufs.as_mut_ptr(), h.n as u32) };
            h.n = 0;
        }
    }
}

impl Port for DpdkPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll_control(&mut self, now: Instant) {
        if self.lcore.is_none() {
            // SAFETY: registers the calling (worker) thread with the EAL; idempotent.
            let id = unsafe { ffi::usw_thread_register() };
            if id < 0 {
                tracing::warn!(port = %self.name, "worker thread not registered with the EAL (no mempool cache)");
            }
            self.lcore = Some(id);
        }
        if self.next_check.is_some_and(|t| now < t) {
            return;
        }
        self.next_check = Some(now + CHECK_EVERY);
        self.refresh();
    }

    fn link_up(&self) -> bool {
        self.link
    }

    fn rx_queues(&self) -> usize {
        if self.link {
            self.nq
        } else {
            0
        }
    }

    fn tx_queues(&self) -> usize {
        self.rx_queues()
    }

    fn rx_burst(&mut self, q: usize, out: &mut [PktRef]) -> usize {
        if q >= self.nq || !self.link {
            return 0;
        }
        self.free_rx(q);
        let want = out.len().min(MAX_BURST);
        let h = &mut self.rx[q];
        // SAFETY: port_id/q are a started port's queue; `mbufs` has MAX_BURST >= want slots.
        let n = usize::from(unsafe {
            ffi::usw_rx_burst(self.port_id, q as u16, h.mbufs.as_mut_ptr(), want as u16)
        });
        h.n = n;
        let st = &mut self.stats[q];
        let mut k = 0;
        for &m in &h.mbufs[..n] {
            let p = &mut out[k];
            p.clear();
            p.queue = q as u16;
            let mut seg = m;
            let mut ok = true;
            while !seg.is_null() {
                let mut data: *const u8 = std::ptr::null();
                let mut len = 0u32;
                // SAFETY: `seg` is an mbuf of a chain the PMD just handed us.
                let next = unsafe { ffi::usw_mbuf_seg(seg, &mut data, &mut len) };
                if len > 0 {
                    // SAFETY: data..data+len is the segment's packet data, valid until the
                    // mbuf is freed at rx_release (after every use of the PktRef).
                    if !p.push_seg(unsafe { Seg::from_raw(data, len) }) {
                        ok = false;
                        break;
                    }
                }
                seg = next;
            }
            if !ok || p.is_empty() || p.segs().len() > MAX_SEGS {
                st.count_drop(Why::BadDesc, 1);
                continue;
            }
            st.rx_packets += 1;
            st.rx_bytes += u64::from(p.len());
            k += 1;
        }
        if k == 0 {
            self.free_rx(q);
        }
        k
    }

    fn rx_release(&mut self, q: usize) {
        self.free_rx(q);
    }

    fn tx_burst(&mut self, q: usize, pkts: &[PktRef], items: &[TxItem]) -> usize {
        let q = if self.nq == 0 { 0 } else { q % self.nq };
        let st = &mut self.stats[q];
        if !self.link {
            st.count_drop(Why::NoBuffer, items.len() as u64);
            return 0;
        }
        let mut sent = 0;
        for chunk in items.chunks(MAX_BURST) {
            let n = chunk.len();
            let bufs = &mut self.tx_scratch;
            // SAFETY: the pool is live; `bufs` has MAX_BURST >= n slots.
            if unsafe { ffi::usw_mbuf_alloc_bulk(self.pool.as_ptr(), bufs.as_mut_ptr(), n as u32) }
                != 0
            {
                st.count_drop(Why::NoBuffer, n as u64);
                continue;
            }
            // Fill: packets that cannot be sent give their mbuf back; the rest are packed
            // to the front of `bufs`.
            let mut ready = 0usize;
            let mut bytes = [0u32; MAX_BURST];
            for (i, it) in chunk.iter().enumerate() {
                let m = bufs[i];
                let mut keep = false;
                if let Some(mut rd) = PktReader::for_item(pkts, it, st) {
                    let mut room = 0u32;
                    // SAFETY: `m` is a fresh mbuf of ours; room is a valid out pointer.
                    let data = unsafe { ffi::usw_mbuf_room(m, &mut room) };
                    if rd.out_len() > room {
                        st.count_drop(Why::NoBuffer, 1);
                    } else {
                        // SAFETY: data..data+room is the mbuf's writable data area, owned
                        // by us until handed to the PMD.
                        let dst = unsafe { SegMut::from_raw(data, room) };
                        let mut off = 0usize;
                        while !rd.done() {
                            let w = rd.fill(&dst, off);
                            if w == 0 {
                                break;
                            }
                            off += w;
                        }
                        // SAFETY: `m` is ours; off <= room.
                        unsafe { ffi::usw_mbuf_set_len(m, off as u32) };
                        bytes[ready] = off as u32;
                        keep = off > 0;
                    }
                }
                if keep {
                    bufs[ready] = m;
                    ready += 1;
                } else {
                    let mut one = m;
                    // SAFETY: `m` is a fresh mbuf of ours not stored anywhere else.
                    unsafe { ffi::usw_mbuf_free_bulk(&mut one, 1) };
                }
            }
            if ready == 0 {
                continue;
            }
            // SAFETY: the first `ready` entries are filled mbufs we own; the PMD takes
            // ownership of the first `done` of them.
            let done = usize::from(unsafe {
                ffi::usw_tx_burst(self.port_id, q as u16, bufs.as_mut_ptr(), ready as u16)
            });
            if done < ready {
                // SAFETY: entries done..ready were not taken by the PMD: still ours, freed once.
                unsafe {
                    ffi::usw_mbuf_free_bulk(bufs[done..].as_mut_ptr(), (ready - done) as u32)
                };
                st.count_drop(Why::RingFull, (ready - done) as u64);
            }
            st.tx_packets += done as u64;
            st.tx_bytes += bytes[..done].iter().map(|&b| u64::from(b)).sum::<u64>();
            sent += done;
        }
        sent
    }

    fn stats(&self) -> PortStats {
        let mut total = QueueStats::default();
        for s in &self.stats {
            total.add(s);
        }
        PortStats {
            name: self.name.clone(),
            link_up: self.link,
            total,
            queues: self.stats.clone(),
            control_errors: self.control_errors,
            connects: self.connects,
            disconnects: self.disconnects,
            last_disconnect_reason: self.last_disconnect_reason.clone(),
        }
    }

    fn clear_stats(&mut self) {
        for s in &mut self.stats {
            *s = QueueStats::default();
        }
        // SAFETY: port_id is ours.
        unsafe { ffi::usw_port_stats_reset(self.port_id) };
        self.hw = HwStats::default();
        self.hw_rx_drops_seen = 0;
        self.control_errors = 0;
        self.connects = 0;
        self.disconnects = 0;
    }

    fn info(&self) -> PortInfo {
        let mut d = Map::new();
        d.insert("devargs".into(), json!(self.cfg.devargs));
        d.insert("device".into(), json!(self.cfg.device()));
        d.insert("port_id".into(), json!(self.port_id));
        d.insert("driver".into(), json!(self.driver));
        let mac = self
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>();
        d.insert("mac".into(), json!(mac.join(":")));
        d.insert("socket".into(), json!(self.socket));
        d.insert("queues".into(), json!(self.nq));
        d.insert("ring_size".into(), json!(self.cfg.ring_size));
        d.insert("link_speed_mbps".into(), json!(self.speed));
        d.insert("attached_by_uswitch".into(), json!(self.attached));
        d.insert("memory".into(), json!("dpdk-mempool"));
        d.insert("mbuf_avail".into(), json!(self.pool.avail()));
        d.insert("mbuf_total".into(), json!(self.pool.size()));
        d.insert("mbuf_room".into(), json!(self.pool.room()));
        d.insert("worker_lcore".into(), json!(self.lcore));
        d.insert("dpdk_version".into(), json!(ffi::version()));
        d.insert("hw_ipackets".into(), json!(self.hw.ipackets));
        d.insert("hw_opackets".into(), json!(self.hw.opackets));
        d.insert("hw_ibytes".into(), json!(self.hw.ibytes));
        d.insert("hw_obytes".into(), json!(self.hw.obytes));
        d.insert("hw_imissed".into(), json!(self.hw.imissed));
        d.insert("hw_ierrors".into(), json!(self.hw.ierrors));
        d.insert("hw_oerrors".into(), json!(self.hw.oerrors));
        d.insert("hw_rx_nombuf".into(), json!(self.hw.rx_nombuf));
        PortInfo {
            name: self.name.clone(),
            kind: "dpdk".into(),
            link_up: self.link,
            peer_name: None,
            peer_version: None,
            details: d,
        }
    }

    fn count_no_route(&mut self, q: usize, n: u64) {
        if let Some(s) = self.stats.get_mut(q) {
            s.drop_no_route += n;
        }
    }
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        for q in 0..self.rx.len() {
            self.free_rx(q);
        }
        close(self.port_id, self.attached);
        unclaim(self.port_id);
        tracing::info!(port = %self.name, port_id = self.port_id, "DPDK port closed");
    }
}
