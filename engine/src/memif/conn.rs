//! One memif control connection and the handshake state machine for both roles.
//!
//! Server role (we listen, the client owns the memory):
//! `HELLO →` (limits: our queue count, `max_ring_size`) · `← INIT` (version 2.0, id, mode,
//! secret) `ACK →` · `← ADD_REGION`+fd (mapped, size checked) `ACK →` · `← ADD_RING`+eventfd
//! (index < our queues, size ≤ our HELLO limit, region known, ring inside it) `ACK →` ·
//! `← CONNECT` (rings complete, cookies valid) `CONNECTED →`: up.
//!
//! Client role (we connect and allocate): `← HELLO` (version range) → we size and allocate one
//! region (rings, then buffers), then send INIT, ADD_REGION, ADD_RINGs and CONNECT one at a time,
//! each after the previous ACK (DPDK's client does the same) · `← CONNECTED`: we mask interrupts
//! on the rings we poll, hand all S2C buffers to the server, and are up.
//!
//! Any message out of order, malformed, or failing a check ends the connection with a
//! DISCONNECT carrying the reason ([`Fail`]). Nothing here panics on peer input, and dropping a
//! [`Session`] closes the socket and every fd and unmaps every region it holds.
use crate::config::{MemifConfig, MemifMode};
use crate::memif::queue::{BufLayout, RxQueue, TxQueue};
use crate::memif::ring::{Ring, MAX_LOG2_RING};
use crate::memif::socket;
use crate::memif::wire::{
    ring_bytes, AddRegion, AddRing, Hello, Init, Mode, Msg, Name, RingDir, Secret, COOKIE, VERSION,
};
use crate::shm::{Backing, MmapRegion};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

/// Most regions a peer may add.
pub const MAX_REGIONS: usize = 16;
/// Name we announce in HELLO / INIT.
pub const OUR_NAME: &str = "uswitch";

/// Why a connection ends; `notify` = send DISCONNECT with `reason` first.
#[derive(Debug)]
pub struct Fail {
    pub reason: String,
    pub notify: bool,
    /// Counted as a control error (bad peer input / failed handshake) rather than a normal close.
    pub error: bool,
}

impl Fail {
    pub fn protocol(reason: impl Into<String>) -> Fail {
        Fail {
            reason: reason.into(),
            notify: true,
            error: true,
        }
    }
    pub fn closed(reason: impl Into<String>) -> Fail {
        Fail {
            reason: reason.into(),
            notify: false,
            error: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Server: HELLO sent, waiting for INIT.
    WaitInit,
    /// Server: INIT accepted; regions and rings arrive until CONNECT.
    Setup,
    /// Client: connected, waiting for HELLO.
    WaitHello,
    /// Client: sent outbox[i - 1], waiting for its ACK.
    Sending(usize),
    /// Client: CONNECT sent.
    WaitConnected,
    Up,
}

/// A ring announced (server) or created (client) before the link is up.
pub struct RingSetup {
    pub ring: Ring,
    pub irq: Option<OwnedFd>,
    /// Client role: the buffers we gave this ring (kept locally, never read back from the peer).
    pub bufs: Option<BufLayout>,
}

/// Fd to attach to an outgoing client message.
#[derive(Clone, Copy)]
enum FdRef {
    None,
    Region(usize),
    C2s(usize),
    S2c(usize),
}

/// Everything one control connection owns.
pub struct Session {
    pub sock: OwnedFd,
    pub since: Instant,
    pub phase: Phase,
    pub regions: Vec<MmapRegion>,
    pub c2s: Vec<Option<RingSetup>>,
    pub s2c: Vec<Option<RingSetup>>,
    pub rx: Vec<RxQueue>,
    pub tx: Vec<TxQueue>,
    pub peer_name: Option<String>,
    pub peer_if_name: Option<String>,
    pub log2: u8,
    pub backing: Option<Backing>,
    outbox: Vec<(Msg, FdRef)>,
}

fn mode_of(m: MemifMode) -> Mode {
    match m {
        MemifMode::Ethernet => Mode::Ethernet,
        MemifMode::Ip => Mode::Ip,
        MemifMode::Punt => Mode::PuntInject,
    }
}

/// Server role: the largest ring (log2) we let a client create, announced in HELLO.
fn max_log2(cfg: &MemifConfig) -> u8 {
    cfg.max_ring_size
        .unwrap_or(MAX_LOG2_RING)
        .min(MAX_LOG2_RING)
}

fn secret_of(cfg: &MemifConfig) -> Secret {
    Secret::new_full(cfg.secret.as_deref().unwrap_or("").as_bytes())
}

impl Session {
    fn new(sock: OwnedFd, now: Instant, phase: Phase) -> Session {
        Session {
            sock,
            since: now,
            phase,
            regions: Vec::new(),
            c2s: Vec::new(),
            s2c: Vec::new(),
            rx: Vec::new(),
            tx: Vec::new(),
            peer_name: None,
            peer_if_name: None,
            log2: 0,
            backing: None,
            outbox: Vec::new(),
        }
    }

    /// Server: a connection was accepted; greet it.
    pub fn accept(sock: OwnedFd, now: Instant, cfg: &MemifConfig) -> Result<Session, Fail> {
        let q = cfg.queues.saturating_sub(1);
        let hello = Msg::Hello(Hello {
            name: Name::new(OUR_NAME),
            min_version: VERSION,
            max_version: VERSION,
            max_region: (MAX_REGIONS - 1) as u16,
            max_s2c_ring: q,
            max_c2s_ring: q,
            max_log2_ring_size: max_log2(cfg),
        });
        let s = Session::new(sock, now, Phase::WaitInit);
        socket::send(&s.sock, &hello, None)
            .map_err(|e| Fail::closed(format!("send HELLO: {e}")))?;
        Ok(s)
    }

    /// Client: the socket connected; wait for HELLO.
    pub fn connected(sock: OwnedFd, now: Instant) -> Session {
        Session::new(sock, now, Phase::WaitHello)
    }

    fn send(&self, m: &Msg, fd: Option<std::os::fd::BorrowedFd<'_>>) -> Result<(), Fail> {
        socket::send(&self.sock, m, fd).map_err(|e| Fail::closed(format!("send {}: {e}", m.kind())))
    }

    pub fn disconnect(&self, reason: &str) {
        let _ = socket::send(&self.sock, &Msg::disconnect(0, reason), None);
    }

    /// Handles one message; Ok(true) when the link just came up.
    pub fn handle(
        &mut self,
        msg: Msg,
        fd: Option<OwnedFd>,
        cfg: &MemifConfig,
        if_name: &str,
    ) -> Result<bool, Fail> {
        if let Msg::Disconnect(d) = msg {
            let up = self.phase == Phase::Up;
            return Err(Fail {
                reason: format!("peer disconnected: {}", d.reason.to_string_lossy()),
                notify: false,
                error: !up,
            });
        }
        match (self.phase, msg) {
            (Phase::WaitInit, Msg::Init(i)) => self.on_init(&i, cfg).map(|_| false),
            (Phase::Setup, Msg::AddRegion(r)) => self.on_add_region(&r, fd).map(|_| false),
            (Phase::Setup, Msg::AddRing(r)) => self.on_add_ring(&r, fd, cfg).map(|_| false),
            (Phase::Setup, Msg::Connect { if_name: peer }) => {
                self.on_connect(peer, if_name)?;
                Ok(true)
            }
            (Phase::WaitHello, Msg::Hello(h)) => self.on_hello(&h, cfg, if_name).map(|_| false),
            (Phase::Sending(i), Msg::Ack) => self.send_next(i).map(|_| false),
            (Phase::WaitConnected, Msg::Connected { if_name: peer }) => {
                self.on_connected(peer)?;
                Ok(true)
            }
            (_, m) => Err(Fail::protocol(format!("Unexpected message {}", m.kind()))),
        }
    }

    // ---- server role ----

    fn on_init(&mut self, i: &Init, cfg: &MemifConfig) -> Result<(), Fail> {
        if i.version != VERSION {
            return Err(Fail::protocol("Incompatible memif version"));
        }
        if i.id != cfg.id {
            return Err(Fail::protocol("ID not found"));
        }
        if i.mode != mode_of(cfg.mode) {
            return Err(Fail::protocol("Interface mode mismatch"));
        }
        if cfg.secret.as_deref().is_some_and(|s| !s.is_empty()) && i.secret != secret_of(cfg) {
            return Err(Fail::protocol("Incorrect secret"));
        }
        self.peer_name = Some(i.name.to_string_lossy());
        self.phase = Phase::Setup;
        self.send(&Msg::Ack, None)
    }

    fn on_add_region(&mut self, r: &AddRegion, fd: Option<OwnedFd>) -> Result<(), Fail> {
        let Some(fd) = fd else {
            return Err(Fail::protocol("Missing region fd"));
        };
        if usize::from(r.index) != self.regions.len() || self.regions.len() >= MAX_REGIONS {
            return Err(Fail::protocol("Invalid region index"));
        }
        let region = MmapRegion::from_fd(fd, r.size)
            .map_err(|e| Fail::protocol(format!("Cannot map region: {e}")))?;
        self.regions.push(region);
        self.send(&Msg::Ack, None)
    }

    fn on_add_ring(
        &mut self,
        r: &AddRing,
        fd: Option<OwnedFd>,
        cfg: &MemifConfig,
    ) -> Result<(), Fail> {
        let Some(fd) = fd else {
            return Err(Fail::protocol("Missing interrupt fd"));
        };
        if r.index >= cfg.queues {
            return Err(Fail::protocol("Invalid ring index"));
        }
        if r.log2_ring_size == 0 || r.log2_ring_size > MAX_LOG2_RING {
            return Err(Fail::protocol("Invalid ring size"));
        }
        let max = max_log2(cfg);
        if r.log2_ring_size > max {
            return Err(Fail::protocol(format!(
                "Ring size 2^{} above the 2^{max} the server allows",
                r.log2_ring_size
            )));
        }
        if self.log2 != 0 && self.log2 != r.log2_ring_size {
            return Err(Fail::protocol("Ring sizes differ"));
        }
        let Some(region) = self.regions.get(usize::from(r.region)) else {
            return Err(Fail::protocol("Invalid ring region"));
        };
        let Some(ring) = Ring::new(r.region, region, r.offset as usize, r.log2_ring_size) else {
            return Err(Fail::protocol("Ring outside its region"));
        };
        let list = if r.dir == RingDir::C2S {
            &mut self.c2s
        } else {
            &mut self.s2c
        };
        let idx = usize::from(r.index);
        if list.len() <= idx {
            list.resize_with(idx + 1, || None);
        }
        if list[idx].is_some() {
            return Err(Fail::protocol("Duplicate ring index"));
        }
        list[idx] = Some(RingSetup {
            ring,
            irq: Some(fd),
            bufs: None,
        });
        self.log2 = r.log2_ring_size;
        self.send(&Msg::Ack, None)
    }

    fn on_connect(&mut self, peer: Name, if_name: &str) -> Result<(), Fail> {
        let complete = |l: &Vec<Option<RingSetup>>| !l.is_empty() && l.iter().all(|r| r.is_some());
        if !complete(&self.c2s) || !complete(&self.s2c) {
            return Err(Fail::protocol("Missing rings"));
        }
        let all = self.c2s.iter().chain(self.s2c.iter()).flatten();
        for rs in all {
            let region = &self.regions[usize::from(rs.ring.region)];
            if rs.ring.cookie(region) != COOKIE {
                return Err(Fail::protocol("Wrong ring cookie"));
            }
        }
        for rs in self.c2s.drain(..).flatten() {
            let region = &self.regions[usize::from(rs.ring.region)];
            let q = RxQueue::server(rs.ring, rs.ring.load_tail(region), rs.irq);
            q.mask_interrupts(&self.regions);
            self.rx.push(q);
        }
        for rs in self.s2c.drain(..).flatten() {
            let region = &self.regions[usize::from(rs.ring.region)];
            self.tx
                .push(TxQueue::server(rs.ring, rs.ring.load_tail(region), rs.irq));
        }
        self.peer_if_name = Some(peer.to_string_lossy());
        self.send(
            &Msg::Connected {
                if_name: Name::new(if_name),
            },
            None,
        )?;
        self.phase = Phase::Up;
        Ok(())
    }

    // ---- client role ----

    fn on_hello(&mut self, h: &Hello, cfg: &MemifConfig, if_name: &str) -> Result<(), Fail> {
        if h.min_version > VERSION || h.max_version < VERSION {
            return Err(Fail::protocol("Incompatible memif version"));
        }
        self.peer_name = Some(h.name.to_string_lossy());
        let n_c2s = usize::from(cfg.queues.min(h.max_c2s_ring.saturating_add(1)));
        let n_s2c = usize::from(cfg.queues.min(h.max_s2c_ring.saturating_add(1)));
        let log2 = cfg.ring_size.min(h.max_log2_ring_size).min(MAX_LOG2_RING);
        if log2 == 0 {
            return Err(Fail::protocol("Peer allows no ring size"));
        }
        self.log2 = log2;
        let bsize = cfg.buffer_size;
        let slots = 1usize << log2;
        let ring_sz = ring_bytes(log2);
        let nrings = n_c2s + n_s2c;
        let buf_base = (nrings * ring_sz).next_multiple_of(4096);
        let total = buf_base + nrings * slots * bsize as usize;
        if total > u32::MAX as usize {
            return Err(Fail::protocol("Memory for rings and buffers exceeds 4 GiB"));
        }
        let (region, backing) = MmapRegion::alloc(total, if_name)
            .map_err(|e| Fail::protocol(format!("Cannot allocate memory: {e}")))?;
        self.backing = Some(backing);
        let region_len = region.len();
        self.regions.push(region);
        let r = &self.regions[0];
        let mut outbox = vec![
            (
                Msg::Init(Init {
                    version: VERSION,
                    id: cfg.id,
                    mode: mode_of(cfg.mode),
                    secret: secret_of(cfg),
                    name: Name::new(OUR_NAME),
                }),
                FdRef::None,
            ),
            (
                Msg::AddRegion(AddRegion {
                    index: 0,
                    size: region_len as u64,
                }),
                FdRef::Region(0),
            ),
        ];
        for k in 0..nrings {
            let (dir, idx) = if k < n_c2s {
                (RingDir::C2S, k)
            } else {
                (RingDir::S2C, k - n_c2s)
            };
            let Some(ring) = Ring::new(0, r, k * ring_sz, log2) else {
                return Err(Fail::protocol("internal: ring layout does not fit"));
            };
            ring.init_header(r, 0);
            let bufs = BufLayout {
                region: 0,
                base: (buf_base + k * slots * bsize as usize) as u32,
                size: bsize,
            };
            for s in 0..slots as u16 {
                let d = crate::memif::wire::Desc {
                    flags: 0,
                    region: 0,
                    length: bsize,
                    offset: bufs.base + u32::from(s) * bsize,
                    metadata: 0,
                };
                ring.write_desc(r, s, &d);
            }
            let irq: OwnedFd =
                EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
                    .map_err(|e| Fail::protocol(format!("eventfd: {e}")))?
                    .into();
            let msg = Msg::AddRing(AddRing {
                dir,
                index: idx as u16,
                region: 0,
                offset: (k * ring_sz) as u32,
                log2_ring_size: log2,
                private_hdr_size: 0,
            });
            let setup = RingSetup {
                ring,
                irq: Some(irq),
                bufs: Some(bufs),
            };
            if dir == RingDir::C2S {
                self.c2s.push(Some(setup));
                outbox.push((msg, FdRef::C2s(idx)));
            } else {
                self.s2c.push(Some(setup));
                outbox.push((msg, FdRef::S2c(idx)));
            }
        }
        outbox.push((
            Msg::Connect {
                if_name: Name::new(if_name),
            },
            FdRef::None,
        ));
        self.outbox = outbox;
        self.send_next(0)
    }

    /// Sends outbox[i]; the last one (CONNECT) moves us to WaitConnected.
    fn send_next(&mut self, i: usize) -> Result<(), Fail> {
        let Some(&(msg, fdref)) = self.outbox.get(i) else {
            return Err(Fail::protocol("Unexpected ACK"));
        };
        fn ring_fd(l: &[Option<RingSetup>], j: usize) -> Option<std::os::fd::BorrowedFd<'_>> {
            l.get(j)
                .and_then(|r| r.as_ref())
                .and_then(|r| r.irq.as_ref())
                .map(|f| f.as_fd())
        }
        let fd = match fdref {
            FdRef::None => None,
            FdRef::Region(j) => self.regions.get(j).map(|r| r.fd()),
            FdRef::C2s(j) => ring_fd(&self.c2s, j),
            FdRef::S2c(j) => ring_fd(&self.s2c, j),
        };
        socket::send(&self.sock, &msg, fd)
            .map_err(|e| Fail::closed(format!("send {}: {e}", msg.kind())))?;
        self.phase = if i + 1 == self.outbox.len() {
            Phase::WaitConnected
        } else {
            Phase::Sending(i + 1)
        };
        Ok(())
    }

    fn on_connected(&mut self, peer: Name) -> Result<(), Fail> {
        for rs in self.c2s.drain(..).flatten() {
            let Some(bufs) = rs.bufs else {
                return Err(Fail::protocol("internal: ring without buffers"));
            };
            self.tx.push(TxQueue::client(rs.ring, bufs, rs.irq));
        }
        for rs in self.s2c.drain(..).flatten() {
            let Some(bufs) = rs.bufs else {
                return Err(Fail::protocol("internal: ring without buffers"));
            };
            let mut q = RxQueue::client(rs.ring, bufs, rs.irq);
            q.mask_interrupts(&self.regions);
            q.refill(&self.regions);
            self.rx.push(q);
        }
        self.peer_if_name = Some(peer.to_string_lossy());
        self.phase = Phase::Up;
        Ok(())
    }
}
