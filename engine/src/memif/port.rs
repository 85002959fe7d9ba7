//! [`MemifPort`]: a memif interface in server or client role, implementing [`Port`].
//!
//! - Server role: `new` binds and listens (so a bad path fails at once); `poll_control` accepts
//!   without blocking, one peer at a time (a second one gets DISCONNECT "already connected").
//! - Client role: `new` returns at once; `poll_control` connects with backoff (100 ms doubling to
//!   2 s) whenever there is no connection.
//! - A handshake must complete within [`HANDSHAKE_TIMEOUT`]. Any failure, a peer leaving
//!   (EOF/ECONNRESET/EPIPE) or a protocol violation on a ring drops the [`Session`]: socket and
//!   eventfds closed, regions unmapped, link down; the port then waits for / retries the next
//!   connection. Counters survive reconnects.
//! - Drop closes everything and removes the server socket file (only if it is still ours).
use crate::config::{MemifConfig, MemifRole};
use crate::memif::conn::{Fail, Phase, Session};
use crate::memif::socket::{self, Incoming, SockPath};
use crate::memif::MemifError;
use crate::port::{PktRef, Port, PortInfo, PortStats, QueueStats, TxItem};
use serde_json::{json, Map, Value};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Control messages handled per `poll_control` call.
const MSGS_PER_POLL: usize = 64;

pub struct MemifPort {
    name: String,
    cfg: MemifConfig,
    path: SockPath,
    listener: Option<OwnedFd>,
    /// (dev, ino) of the socket file we bound, to unlink only our own file on drop.
    bound: Option<(u64, u64)>,
    session: Option<Session>,
    next_attempt: Option<Instant>,
    backoff: Duration,
    stats: Vec<QueueStats>,
    control_errors: u64,
    connects: u64,
    disconnects: u64,
    last_disconnect_reason: Option<String>,
}

impl MemifPort {
    /// Server role: binds (and listens on) the socket before returning, so a bad path fails here.
    /// Client role: returns at once; connection attempts happen in `poll_control` with backoff.
    pub fn new(name: &str, cfg: &MemifConfig) -> Result<MemifPort, MemifError> {
        if cfg.queues == 0 || cfg.queues > crate::config::MAX_QUEUES {
            return Err(MemifError::Config(format!(
                "queues must be 1..={}",
                crate::config::MAX_QUEUES
            )));
        }
        if !(crate::config::MIN_LOG2_RING..=crate::config::MAX_LOG2_RING).contains(&cfg.ring_size) {
            return Err(MemifError::Config(format!(
                "invalid ring size (log2) {}",
                cfg.ring_size
            )));
        }
        if !(crate::config::MIN_BUFFER..=crate::config::MAX_BUFFER).contains(&cfg.buffer_size) {
            return Err(MemifError::Config(format!(
                "invalid buffer size {}",
                cfg.buffer_size
            )));
        }
        let rings = 2 * usize::from(cfg.queues);
        let need = rings
            * (crate::memif::wire::ring_bytes(cfg.ring_size)
                + ((cfg.buffer_size as usize) << cfg.ring_size));
        if need + 4096 > u32::MAX as usize {
            return Err(MemifError::Config(format!(
                "queues x ring size x buffer size needs {need} bytes of shared memory; memif offsets allow 4 GiB"
            )));
        }
        let path = SockPath::parse(&cfg.socket);
        let (listener, bound) = match cfg.role {
            MemifRole::Server => {
                let l = socket::listen(&path)?;
                let bound = match &path {
                    SockPath::File(p) => std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())),
                    SockPath::Abstract(_) => None,
                };
                tracing::info!(port = name, socket = %path, "memif server listening");
                (Some(l), bound)
            }
            MemifRole::Client => (None, None),
        };
        Ok(MemifPort {
            name: name.to_string(),
            cfg: cfg.clone(),
            path,
            listener,
            bound,
            session: None,
            next_attempt: None,
            backoff: BACKOFF_MIN,
            stats: vec![QueueStats::default(); usize::from(cfg.queues)],
            control_errors: 0,
            connects: 0,
            disconnects: 0,
            last_disconnect_reason: None,
        })
    }

    fn up_session(&self) -> Option<&Session> {
        self.session.as_ref().filter(|s| s.phase == Phase::Up)
    }

    /// Ends the current session (if any) for `f`.
    fn end(&mut self, f: Fail, now: Instant) {
        let Some(s) = self.session.take() else { return };
        if f.notify {
            s.disconnect(&f.reason);
        }
        let was_up = s.phase == Phase::Up;
        if was_up {
            self.disconnects += 1;
        }
        if f.error {
            self.control_errors += 1;
        }
        if f.error || was_up {
            tracing::warn!(port = %self.name, reason = %f.reason, "memif disconnected");
            self.last_disconnect_reason = Some(f.reason);
        }
        drop(s); // closes the socket and eventfds, unmaps the regions
        if self.cfg.role == MemifRole::Client {
            if was_up {
                self.backoff = BACKOFF_MIN;
            }
            self.next_attempt = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn poll_listener(&mut self, now: Instant) {
        let Some(l) = &self.listener else { return };
        loop {
            match socket::accept(l) {
                Ok(Some(sock)) => {
                    if self.session.is_some() {
                        let _ = socket::send(
                            &sock,
                            &crate::memif::wire::Msg::disconnect(0, "already connected"),
                            None,
                        );
                        self.control_errors += 1;
                        continue;
                    }
                    match Session::accept(sock, now, &self.cfg) {
                        Ok(s) => self.session = Some(s),
                        Err(f) => {
                            self.control_errors += 1;
                            self.last_disconnect_reason = Some(f.reason);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(port = %self.name, "accept failed: {e}");
                    break;
                }
            }
        }
    }

    fn poll_connect(&mut self, now: Instant) {
        if self.session.is_some() || self.next_attempt.is_some_and(|t| now < t) {
            return;
        }
        match socket::connect(&self.path) {
            Ok(sock) => {
                tracing::debug!(port = %self.name, socket = %self.path, "memif client connected socket");
                self.session = Some(Session::connected(sock, now));
                self.next_attempt = None;
            }
            Err(e) => {
                tracing::trace!(port = %self.name, "connect {}: {e}", self.path);
                self.next_attempt = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    fn poll_session(&mut self, now: Instant) {
        for _ in 0..MSGS_PER_POLL {
            let Some(s) = self.session.as_mut() else {
                return;
            };
            let res = match socket::recv(&s.sock) {
                None => break,
                Some(Incoming::Closed(why)) => Err(Fail::closed(why)),
                Some(Incoming::Bad(why)) => Err(Fail::protocol(why)),
                Some(Incoming::Msg(m, fd)) => s.handle(m, fd, &self.cfg, &self.name),
            };
            match res {
                Ok(true) => {
                    self.connects += 1;
                    self.backoff = BACKOFF_MIN;
                    let s = self.session.as_ref();
                    tracing::info!(
                        port = %self.name,
                        peer = ?s.and_then(|s| s.peer_name.clone()),
                        rx_queues = s.map_or(0, |s| s.rx.len()),
                        tx_queues = s.map_or(0, |s| s.tx.len()),
                        "memif link up"
                    );
                }
                Ok(false) => {}
                Err(f) => {
                    self.end(f, now);
                    return;
                }
            }
        }
        let Some(s) = self.session.as_ref() else {
            return;
        };
        if s.phase != Phase::Up && now.saturating_duration_since(s.since) > HANDSHAKE_TIMEOUT {
            self.end(Fail::protocol("Handshake timeout"), now);
        } else if s.phase == Phase::Up {
            let why =
                s.rx.iter()
                    .find_map(|q| q.violation)
                    .or(s.tx.iter().find_map(|q| q.violation));
            if let Some(why) = why {
                self.end(Fail::protocol(format!("Protocol violation: {why}")), now);
            }
        }
    }
}

impl Port for MemifPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll_control(&mut self, now: Instant) {
        match self.cfg.role {
            MemifRole::Server => self.poll_listener(now),
            MemifRole::Client => self.poll_connect(now),
        }
        self.poll_session(now);
    }

    /// Up: the listener (server) and the session socket; anything else (handshake, client
    /// backoff, a ring violation to act on) asks for `poll_control` every tick.
    fn control_interest<'a>(&'a self, fds: &mut Vec<BorrowedFd<'a>>) -> bool {
        if let Some(l) = &self.listener {
            fds.push(l.as_fd());
        }
        match &self.session {
            Some(s) if s.phase == Phase::Up => {
                fds.push(s.sock.as_fd());
                s.rx.iter().any(|q| q.violation.is_some())
                    || s.tx.iter().any(|q| q.violation.is_some())
            }
            Some(_) => true,
            // Server: waiting for a peer is the listener's readability; client: backoff timer.
            None => self.cfg.role == MemifRole::Client,
        }
    }

    /// Reloads the peer's MASK_INT flag of every tx ring (see `TxQueue::refresh_mask`).
    fn tick(&mut self) {
        if let Some(s) = self.session.as_mut().filter(|s| s.phase == Phase::Up) {
            for q in &mut s.tx {
                q.refresh_mask(&s.regions);
            }
        }
    }

    fn link_up(&self) -> bool {
        self.up_session().is_some()
    }

    fn rx_queues(&self) -> usize {
        self.up_session().map_or(0, |s| s.rx.len())
    }

    fn tx_queues(&self) -> usize {
        self.up_session().map_or(0, |s| s.tx.len())
    }

    fn rx_burst(&mut self, q: usize, out: &mut [PktRef]) -> usize {
        let Some(s) = self.session.as_mut().filter(|s| s.phase == Phase::Up) else {
            return 0;
        };
        let (Some(rxq), Some(st)) = (s.rx.get_mut(q), self.stats.get_mut(q)) else {
            return 0;
        };
        rxq.burst(q as u16, &s.regions, out, st)
    }

    fn rx_release(&mut self, q: usize) {
        let Some(s) = self.session.as_mut().filter(|s| s.phase == Phase::Up) else {
            return;
        };
        if let Some(rxq) = s.rx.get_mut(q) {
            rxq.release(&s.regions);
        }
    }

    fn tx_burst(&mut self, q: usize, pkts: &[PktRef], items: &[TxItem]) -> usize {
        let Some(s) = self.session.as_mut().filter(|s| s.phase == Phase::Up) else {
            let n = self.stats.len().max(1);
            if let Some(st) = self.stats.get_mut(q % n) {
                st.count_drop(crate::port::Drop::NoBuffer, items.len() as u64);
            }
            return 0;
        };
        if s.tx.is_empty() {
            return 0;
        }
        let q = q % s.tx.len();
        let (Some(txq), Some(st)) = (s.tx.get_mut(q), self.stats.get_mut(q)) else {
            return 0;
        };
        txq.burst(&s.regions, pkts, items, st)
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
            control_errors: self.control_errors,
            connects: self.connects,
            disconnects: self.disconnects,
            last_disconnect_reason: self.last_disconnect_reason.clone(),
        }
    }

    fn clear_stats(&mut self) {
        self.stats
            .iter_mut()
            .for_each(|q| *q = QueueStats::default());
        self.control_errors = 0;
        self.connects = 0;
        self.disconnects = 0;
    }

    fn info(&self) -> PortInfo {
        let s = self.up_session();
        let mut d = Map::new();
        let role = match self.cfg.role {
            MemifRole::Server => "server",
            MemifRole::Client => "client",
        };
        d.insert("role".into(), json!(role));
        d.insert("socket".into(), json!(self.cfg.socket));
        d.insert("id".into(), json!(self.cfg.id));
        d.insert(
            "mode".into(),
            serde_json::to_value(self.cfg.mode).unwrap_or(Value::Null),
        );
        d.insert("queues".into(), json!(self.cfg.queues));
        d.insert("rx_queues".into(), json!(s.map_or(0, |s| s.rx.len())));
        d.insert("tx_queues".into(), json!(s.map_or(0, |s| s.tx.len())));
        let log2 = s.map_or(self.cfg.ring_size, |s| s.log2);
        d.insert("ring_size".into(), json!(1u32 << log2));
        if let Some(m) = self.cfg.max_ring_size {
            d.insert("max_ring_size".into(), json!(1u32 << m));
        }
        if self.cfg.role == MemifRole::Client {
            // A server's buffers are the client's, of a size the protocol does not announce.
            d.insert("buffer_size".into(), json!(self.cfg.buffer_size));
        }
        let memory = match self.cfg.role {
            MemifRole::Server => Some("peer"),
            MemifRole::Client => self
                .session
                .as_ref()
                .and_then(|s| s.backing)
                .map(|b| b.as_str()),
        };
        d.insert("memory".into(), memory.map_or(Value::Null, |m| json!(m)));
        if let Some(n) = s.and_then(|s| s.peer_if_name.clone()) {
            d.insert("peer_if_name".into(), json!(n));
        }
        let state = match self.session.as_ref().map(|s| s.phase) {
            None => "waiting",
            Some(Phase::Up) => "up",
            Some(_) => "handshake",
        };
        d.insert("state".into(), json!(state));
        PortInfo {
            name: self.name.clone(),
            kind: "memif".into(),
            link_up: s.is_some(),
            peer_name: s.and_then(|s| s.peer_name.clone()),
            peer_version: s.map(|_| "2.0".to_string()),
            details: d,
        }
    }

    fn count_no_route(&mut self, q: usize, n: u64) {
        if let Some(st) = self.stats.get_mut(q) {
            st.drop_no_route += n;
        }
    }
}

impl Drop for MemifPort {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            s.disconnect("interface deleted");
        }
        self.listener = None;
        if let (SockPath::File(p), Some((dev, ino))) = (&self.path, self.bound) {
            if std::fs::metadata(p).is_ok_and(|m| m.dev() == dev && m.ino() == ino) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}
