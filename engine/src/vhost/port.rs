//! [`VhostUserPort`]: a vhost-user backend port (server or client mode) implementing [`Port`].
//!
//! - `new` binds the socket in server mode (a bad path fails at once) and starts the control
//!   thread ([`super::session`]); client mode connects from that thread with backoff.
//! - The worker owns the live [`Device`]; `poll_control` swaps in a newly published one (never
//!   between `rx_burst` and `rx_release`), carrying ring indices over for rings that were not
//!   restarted, and acknowledges it so the control thread can answer GET_VRING_BASE.
//! - Queue pair `q`: rx = guest TX ring `2q+1`, tx = guest RX ring `2q`. Only leading pairs with
//!   both rings live count (`rx_queues`/`tx_queues`); the link is up with at least one.
//! - Drop stops the thread (shutting the connection down), joins it, and removes the server
//!   socket file if it is still ours. Counters survive reconnects.
use super::session::{self, Shared};
use super::virtq::Device;
use super::VhostError;
use crate::config::{VhostUserConfig, VhostUserMode, MAX_QUEUES};
use crate::port::{Drop as Why, PktRef, Port, PortInfo, PortStats, QueueStats, TxItem};
use serde_json::{json, Map};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub struct VhostUserPort {
    name: String,
    cfg: VhostUserConfig,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// (dev, ino) of the socket file we bound (server mode).
    bound: Option<(u64, u64)>,
    dev: Option<Device>,
    applied_gen: u64,
    active: usize,
    stats: Vec<QueueStats>,
}

impl VhostUserPort {
    pub fn new(name: &str, cfg: &VhostUserConfig) -> Result<VhostUserPort, VhostError> {
        if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
            return Err(VhostError::Config(format!(
                "queues must be 1..={MAX_QUEUES}"
            )));
        }
        if !cfg.socket.starts_with('/') {
            return Err(VhostError::Config(format!(
                "socket path {:?} must be absolute",
                cfg.socket
            )));
        }
        let (listener, bound) = match cfg.mode {
            VhostUserMode::Server => {
                let l = session::bind(&cfg.socket)?;
                let bound = std::fs::metadata(&cfg.socket)
                    .ok()
                    .map(|m| (m.dev(), m.ino()));
                tracing::info!(port = name, socket = %cfg.socket, "vhost-user server listening");
                (Some(l), bound)
            }
            VhostUserMode::Client => (None, None),
        };
        let shared = Arc::new(Shared::new(cfg.queues));
        let thread = session::spawn(name, cfg, shared.clone(), listener).map_err(|e| {
            VhostError::Socket {
                path: cfg.socket.clone(),
                err: e,
            }
        })?;
        Ok(VhostUserPort {
            name: name.to_string(),
            cfg: cfg.clone(),
            shared,
            thread: Some(thread),
            bound,
            dev: None,
            applied_gen: 0,
            active: 0,
            stats: vec![QueueStats::default(); usize::from(cfg.queues)],
        })
    }

    fn publish_avail(&self, ring: usize) {
        let Some(q) = self
            .dev
            .as_ref()
            .and_then(|d| d.rings.get(ring))
            .and_then(|q| q.as_ref())
        else {
            return;
        };
        if let Some(a) = self.shared.last_avail.get(ring) {
            a.store(q.last_avail, Ordering::Release);
        }
    }

    fn apply(&mut self, new: Option<Device>, gen: u64) {
        let old = self.dev.take();
        if let Some(old) = &old {
            for (i, q) in old.rings.iter().enumerate() {
                if let (Some(q), Some(a)) = (q, self.shared.last_avail.get(i)) {
                    a.store(q.last_avail, Ordering::Release);
                }
            }
        }
        let mut new = new;
        if let (Some(new), Some(old)) = (new.as_mut(), old.as_ref()) {
            for (n, o) in new.rings.iter_mut().zip(old.rings.iter()) {
                if let (Some(n), Some(o)) = (n.as_mut(), o.as_ref()) {
                    if !n.fresh {
                        n.carry_from(o);
                    }
                }
            }
        }
        if let Some(new) = new.as_ref() {
            for (i, q) in new.rings.iter().enumerate() {
                if let (Some(q), Some(a)) = (q, self.shared.last_avail.get(i)) {
                    a.store(q.last_avail, Ordering::Release);
                }
            }
        }
        drop(old);
        self.active = new
            .as_ref()
            .map_or(0, |d| d.active_pairs())
            .min(self.stats.len());
        let was_up = self.dev.is_some();
        self.dev = new;
        if self.active > 0 && !was_up {
            tracing::info!(port = %self.name, pairs = self.active, "vhost-user link up");
        }
        self.applied_gen = gen;
        self.shared.applied.store(gen, Ordering::Release);
    }
}

impl Port for VhostUserPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll_control(&mut self, _now: Instant) {
        if self.shared.gen.load(Ordering::Acquire) == self.applied_gen {
            return;
        }
        if let Some((dev, gen)) = self.shared.take() {
            self.apply(dev, gen);
        }
    }

    fn link_up(&self) -> bool {
        self.active > 0
    }

    fn rx_queues(&self) -> usize {
        self.active
    }

    fn tx_queues(&self) -> usize {
        self.active
    }

    fn rx_burst(&mut self, q: usize, out: &mut [PktRef]) -> usize {
        if q >= self.active {
            return 0;
        }
        let (Some(dev), Some(st)) = (self.dev.as_mut(), self.stats.get_mut(q)) else {
            return 0;
        };
        match dev.rings.get_mut(2 * q + 1) {
            Some(Some(vq)) => vq.rx_burst(q as u16, out, st),
            _ => 0,
        }
    }

    fn rx_release(&mut self, q: usize) {
        let ring = 2 * q + 1;
        if let Some(Some(vq)) = self.dev.as_mut().and_then(|d| d.rings.get_mut(ring)) {
            vq.rx_release();
        }
        self.publish_avail(ring);
    }

    fn tx_burst(&mut self, q: usize, pkts: &[PktRef], items: &[TxItem]) -> usize {
        if self.active == 0 {
            let n = self.stats.len().max(1);
            if let Some(st) = self.stats.get_mut(q % n) {
                st.count_drop(Why::NoBuffer, items.len() as u64);
            }
            return 0;
        }
        let q = q % self.active;
        let ring = 2 * q;
        let (Some(dev), Some(st)) = (self.dev.as_mut(), self.stats.get_mut(q)) else {
            return 0;
        };
        let sent = match dev.rings.get_mut(ring) {
            Some(Some(vq)) => vq.tx_burst(pkts, items, st),
            _ => 0,
        };
        self.publish_avail(ring);
        sent
    }

    fn stats(&self) -> PortStats {
        let mut total = QueueStats::default();
        for q in &self.stats {
            total.add(q);
        }
        PortStats {
            name: self.name.clone(),
            link_up: self.link_up(),
            total,
            queues: self.stats.clone(),
            control_errors: self.shared.control_errors.load(Ordering::Relaxed),
            connects: self.shared.connects.load(Ordering::Relaxed),
            disconnects: self.shared.disconnects.load(Ordering::Relaxed),
            last_disconnect_reason: self.shared.lock_info().last_disconnect_reason.clone(),
        }
    }

    fn clear_stats(&mut self) {
        self.stats
            .iter_mut()
            .for_each(|q| *q = QueueStats::default());
        self.shared.control_errors.store(0, Ordering::Relaxed);
        self.shared.connects.store(0, Ordering::Relaxed);
        self.shared.disconnects.store(0, Ordering::Relaxed);
    }

    fn info(&self) -> PortInfo {
        let info = self.shared.lock_info().clone();
        let mut d = Map::new();
        let mode = match self.cfg.mode {
            VhostUserMode::Server => "server",
            VhostUserMode::Client => "client",
        };
        d.insert("mode".into(), json!(mode));
        d.insert("socket".into(), json!(self.cfg.socket));
        d.insert("queues".into(), json!(self.cfg.queues));
        d.insert("rx_queues".into(), json!(self.active));
        d.insert("tx_queues".into(), json!(self.active));
        d.insert("features".into(), json!(format!("{:#x}", info.features)));
        d.insert(
            "protocol_features".into(),
            json!(format!("{:#x}", info.protocol_features)),
        );
        d.insert("memory_regions".into(), json!(info.regions));
        d.insert("memory_bytes".into(), json!(info.memory_bytes));
        d.insert("memory".into(), json!("peer"));
        let state = match (info.connected, self.active > 0) {
            (_, true) => "up",
            (true, false) => "negotiating",
            (false, false) => "waiting",
        };
        d.insert("state".into(), json!(state));
        if let Some(dev) = &self.dev {
            let calls: u64 = dev.rings.iter().flatten().map(|q| q.calls).sum();
            d.insert("call_signals".into(), json!(calls));
            let sizes: Vec<u16> = dev.rings.iter().flatten().map(|q| q.size()).collect();
            d.insert("ring_sizes".into(), json!(sizes));
            let rings: Vec<_> = dev
                .rings
                .iter()
                .enumerate()
                .filter_map(|(i, q)| q.as_ref().map(|q| (i, q.indices())))
                .map(|(i, (avail, last, used, broken))| {
                    json!({"ring": i, "avail_idx": avail, "last_avail": last, "used_idx": used, "broken": broken})
                })
                .collect();
            d.insert("rings".into(), json!(rings));
        }
        PortInfo {
            name: self.name.clone(),
            kind: "vhost-user".into(),
            link_up: self.link_up(),
            peer_name: None,
            peer_version: None,
            details: d,
        }
    }

    fn count_no_route(&mut self, q: usize, n: u64) {
        if let Some(st) = self.stats.get_mut(q) {
            st.drop_no_route += n;
        }
    }
}

impl Drop for VhostUserPort {
    fn drop(&mut self) {
        self.shared.shutdown();
        // Queues (and their mappings) go first; the thread does not wait for us while stopping.
        self.dev = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some((dev, ino)) = self.bound {
            if std::fs::metadata(&self.cfg.socket).is_ok_and(|m| m.dev() == dev && m.ino() == ino) {
                let _ = std::fs::remove_file(&self.cfg.socket);
            }
        }
    }
}
