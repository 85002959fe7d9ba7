//! memif client handshake for one link whose rings and buffers live in a region we already
//! allocated (and may share with other links — that is what makes the zero-copy reflector work).
//!
//! Sequence (memif 2.0, the same order DPDK's client uses, each step waiting for the ACK):
//! connect (retrying until the deadline: the server may start after us) · `← HELLO` (version
//! range, ring size limit) · `INIT →` · `ADD_REGION`+fd `→` · `ADD_RING` C2S + eventfd `→` ·
//! `ADD_RING` S2C + eventfd `→` · `CONNECT →` · `← CONNECTED`.
//!
//! Blocking, with one deadline for the whole handshake; used only before traffic starts.
//! Every failure is a [`BenchError::Link`] naming the socket and the step; a DISCONNECT from the
//! server carries its reason into the error.
use crate::error::BenchError;
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};
use uswitch::memif::socket::{self, Incoming, SockPath};
use uswitch::memif::wire::{AddRegion, AddRing, Init, Mode, Msg, Name, RingDir, Secret, VERSION};
use uswitch::shm::MmapRegion;

/// Name announced in INIT and CONNECT.
pub const OUR_NAME: &str = "uswitch-bench";

/// Where one link's rings sit in the shared region.
#[derive(Debug, Clone, Copy)]
pub struct RingPlace {
    pub c2s_off: u32,
    pub s2c_off: u32,
    pub log2: u8,
}

/// What the handshake leaves behind.
pub struct Handshaked {
    pub sock: OwnedFd,
    /// Per queue pair: eventfd of the C2S ring (we signal it when the server did not mask
    /// interrupts) and of the S2C ring (kept open; we poll, never wait on it).
    pub irqs: Vec<(OwnedFd, OwnedFd)>,
    pub peer_name: String,
}

struct Ctx<'a> {
    socket: &'a str,
    deadline: Instant,
}

impl Ctx<'_> {
    fn err(&self, msg: impl Into<String>) -> BenchError {
        BenchError::Link {
            socket: self.socket.to_string(),
            msg: msg.into(),
        }
    }

    fn send(
        &self,
        sock: &OwnedFd,
        m: &Msg,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(), BenchError> {
        socket::send(sock, m, fd).map_err(|e| self.err(format!("send {}: {e}", m.kind())))
    }

    /// Waits for the next message (polling the non-blocking socket every 200 µs).
    fn recv(&self, sock: &OwnedFd, want: &str) -> Result<Msg, BenchError> {
        loop {
            match socket::recv(sock) {
                Some(Incoming::Msg(Msg::Disconnect(d), _)) => {
                    return Err(self.err(format!(
                        "server disconnected while we waited for {want}: {}",
                        d.reason.to_string_lossy()
                    )))
                }
                Some(Incoming::Msg(m, _fd)) => return Ok(m),
                Some(Incoming::Bad(why)) => {
                    return Err(self.err(format!("bad message while waiting for {want}: {why}")))
                }
                Some(Incoming::Closed(why)) => {
                    return Err(
                        self.err(format!("connection closed while waiting for {want}: {why}"))
                    )
                }
                None => {
                    if Instant::now() > self.deadline {
                        return Err(self.err(format!("timed out waiting for {want}")));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    fn expect_ack(&self, sock: &OwnedFd, after: &str) -> Result<(), BenchError> {
        match self.recv(sock, "ACK")? {
            Msg::Ack => Ok(()),
            m => Err(self.err(format!("expected ACK after {after}, got {}", m.kind()))),
        }
    }
}

fn eventfd() -> Result<OwnedFd, BenchError> {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
        .map(OwnedFd::from)
        .map_err(|e| BenchError::Setup(format!("eventfd: {e}")))
}

/// Connects to `socket_path` (retrying until `timeout`) and runs the client handshake for one
/// queue pair per entry of `places` in `region` (region index 0 for the server).
pub fn connect(
    socket_path: &str,
    id: u32,
    secret: Option<&str>,
    region: &MmapRegion,
    places: &[RingPlace],
    timeout: Duration,
) -> Result<Handshaked, BenchError> {
    let cx = Ctx {
        socket: socket_path,
        deadline: Instant::now() + timeout,
    };
    let path = SockPath::parse(socket_path);
    let sock = loop {
        match socket::connect(&path) {
            Ok(s) => break s,
            Err(e) => {
                if Instant::now() > cx.deadline {
                    return Err(cx.err(format!("cannot connect: {e}")));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let hello = match cx.recv(&sock, "HELLO")? {
        Msg::Hello(h) => h,
        m => return Err(cx.err(format!("expected HELLO, got {}", m.kind()))),
    };
    if hello.min_version > VERSION || hello.max_version < VERSION {
        return Err(cx.err(format!(
            "server speaks memif versions {:#06x}..={:#06x}, we need {VERSION:#06x}",
            hello.min_version, hello.max_version
        )));
    }
    let log2 = places.first().map_or(0, |p| p.log2);
    let nq = places.len();
    if hello.max_log2_ring_size < log2 {
        return Err(cx.err(format!(
            "server allows rings of at most 2^{} slots; use --ring-size {} or less",
            hello.max_log2_ring_size, hello.max_log2_ring_size
        )));
    }
    if usize::from(hello.max_c2s_ring) + 1 < nq || usize::from(hello.max_s2c_ring) + 1 < nq {
        return Err(cx.err(format!(
            "server accepts {} C2S / {} S2C rings, we need {nq} queue pairs; use --queues",
            u32::from(hello.max_c2s_ring) + 1,
            u32::from(hello.max_s2c_ring) + 1
        )));
    }
    let peer_name = hello.name.to_string_lossy();
    let init = Msg::Init(Init {
        version: VERSION,
        id,
        mode: Mode::Ethernet,
        secret: Secret::new_full(secret.unwrap_or("").as_bytes()),
        name: Name::new(OUR_NAME),
    });
    cx.send(&sock, &init, None)?;
    cx.expect_ack(&sock, "INIT")?;
    let add_region = Msg::AddRegion(AddRegion {
        index: 0,
        size: region.len() as u64,
    });
    cx.send(&sock, &add_region, Some(region.fd()))?;
    cx.expect_ack(&sock, "ADD_REGION")?;
    let mut irqs = Vec::with_capacity(nq);
    for (j, place) in places.iter().enumerate() {
        let c2s_irq = eventfd()?;
        let s2c_irq = eventfd()?;
        let rings = [
            (RingDir::C2S, place.c2s_off, &c2s_irq),
            (RingDir::S2C, place.s2c_off, &s2c_irq),
        ];
        for (dir, off, fd) in rings {
            let m = Msg::AddRing(AddRing {
                dir,
                index: j as u16,
                region: 0,
                offset: off,
                log2_ring_size: log2,
                private_hdr_size: 0,
            });
            cx.send(&sock, &m, Some(fd.as_fd()))?;
            cx.expect_ack(&sock, "ADD_RING")?;
        }
        irqs.push((c2s_irq, s2c_irq));
    }
    cx.send(
        &sock,
        &Msg::Connect {
            if_name: Name::new(OUR_NAME),
        },
        None,
    )?;
    match cx.recv(&sock, "CONNECTED")? {
        Msg::Connected { .. } => {}
        m => return Err(cx.err(format!("expected CONNECTED, got {}", m.kind()))),
    }
    Ok(Handshaked {
        sock,
        irqs,
        peer_name,
    })
}
