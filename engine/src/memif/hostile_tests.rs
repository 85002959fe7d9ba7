//! Hostile-peer tests: a hand-driven raw SEQPACKET client sends garbage, breaks the handshake,
//! or writes bad descriptors; the server-role port must count, disconnect, and stay usable.
//! Also: interrupt-mode behaviour (MASK_INT / eventfd) and a leak check over 20 reconnects.
use crate::config::MemifRole;
use crate::memif::ring::Ring;
use crate::memif::socket::{self, Incoming, SockPath};
use crate::memif::tests::{bring_up, cfg, payload, recv, send};
use crate::memif::wire::{
    ring_bytes, AddRegion, AddRing, Desc, Init, Mode, Msg, Name, RingDir, Secret, DESC_FLAG_NEXT,
    RING_FLAG_MASK_INT, VERSION,
};
use crate::memif::MemifPort;
use crate::port::Port;
use crate::shm::MmapRegion;
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

const LOG2: u8 = 4;
const BSIZE: u32 = 256;

fn sock_name(tag: &str) -> String {
    format!("@uswitch-hostile-{tag}-{}", std::process::id())
}

/// Polls the server until the raw peer has a message (or 2 s pass).
fn expect(server: &mut MemifPort, sock: &OwnedFd) -> Option<Incoming> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        server.poll_control(Instant::now());
        if let Some(m) = socket::recv(sock) {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn expect_msg(server: &mut MemifPort, sock: &OwnedFd) -> Msg {
    match expect(server, sock) {
        Some(Incoming::Msg(m, _)) => m,
        Some(Incoming::Bad(b)) => panic!("bad message from port: {b}"),
        Some(Incoming::Closed(c)) => panic!("port closed: {c}"),
        None => panic!("no message from port"),
    }
}

fn expect_disconnect(server: &mut MemifPort, sock: &OwnedFd, want: &str) {
    match expect_msg(server, sock) {
        Msg::Disconnect(d) => assert!(d.reason.to_string_lossy().contains(want), "{d:?}"),
        m => panic!("expected DISCONNECT {want:?}, got {m:?}"),
    }
}

fn init(id: u32) -> Msg {
    Msg::Init(Init {
        version: VERSION,
        id,
        mode: Mode::Ethernet,
        secret: Secret::default(),
        name: Name::new("raw"),
    })
}

fn connect_raw(server: &mut MemifPort, name: &str) -> OwnedFd {
    let s = socket::connect(&SockPath::parse(name)).unwrap();
    assert!(matches!(expect_msg(server, &s), Msg::Hello(_)));
    s
}

/// Sends INIT (id 7) and ADD_REGION for `region` (both must be ACKed), then one C2S ADD_RING
/// at `offset` with `log2` slots; the caller reads the answer to the ring.
fn init_and_add_ring(
    server: &mut MemifPort,
    s: &OwnedFd,
    region: &MmapRegion,
    offset: u32,
    log2: u8,
) {
    socket::send(s, &init(7), None).unwrap();
    assert_eq!(expect_msg(server, s), Msg::Ack);
    let add = Msg::AddRegion(AddRegion {
        index: 0,
        size: region.len() as u64,
    });
    socket::send(s, &add, Some(region.fd())).unwrap();
    assert_eq!(expect_msg(server, s), Msg::Ack);
    let efd: OwnedFd = EventFd::new().unwrap().into();
    let ring = Msg::AddRing(AddRing {
        dir: RingDir::C2S,
        index: 0,
        region: 0,
        offset,
        log2_ring_size: log2,
        private_hdr_size: 0,
    });
    socket::send(s, &ring, Some(efd.as_fd())).unwrap();
}

/// A client driven by hand: one region with a C2S ring, an S2C ring, then buffers.
struct RawClient {
    sock: OwnedFd,
    region: MmapRegion,
    c2s: Ring,
    s2c: Ring,
    _irq_c2s: OwnedFd,
    irq_s2c: OwnedFd,
    bufs: u32,
}

impl RawClient {
    fn connect(server: &mut MemifPort, name: &str, id: u32) -> RawClient {
        let sock = connect_raw(server, name);
        let rb = ring_bytes(LOG2);
        let bufs = (2 * rb) as u32;
        let (region, _) =
            MmapRegion::alloc(bufs as usize + 2 * 16 * BSIZE as usize, "raw").unwrap();
        let c2s = Ring::new(0, &region, 0, LOG2).unwrap();
        let s2c = Ring::new(0, &region, rb, LOG2).unwrap();
        c2s.init_header(&region, 0);
        s2c.init_header(&region, 0);
        let efd = || -> OwnedFd { EventFd::from_flags(EfdFlags::EFD_NONBLOCK).unwrap().into() };
        let (irq_c2s, irq_s2c) = (efd(), efd());
        socket::send(&sock, &init(id), None).unwrap();
        assert_eq!(expect_msg(server, &sock), Msg::Ack);
        let size = region.len() as u64;
        socket::send(
            &sock,
            &Msg::AddRegion(AddRegion { index: 0, size }),
            Some(region.fd()),
        )
        .unwrap();
        assert_eq!(expect_msg(server, &sock), Msg::Ack);
        for (dir, off, fd) in [(RingDir::C2S, 0, &irq_c2s), (RingDir::S2C, rb, &irq_s2c)] {
            let m = Msg::AddRing(AddRing {
                dir,
                index: 0,
                region: 0,
                offset: off as u32,
                log2_ring_size: LOG2,
                private_hdr_size: 0,
            });
            socket::send(&sock, &m, Some(fd.as_fd())).unwrap();
            assert_eq!(expect_msg(server, &sock), Msg::Ack);
        }
        socket::send(
            &sock,
            &Msg::Connect {
                if_name: Name::new("raw0"),
            },
            None,
        )
        .unwrap();
        assert!(matches!(expect_msg(server, &sock), Msg::Connected { .. }));
        assert!(server.link_up());
        RawClient {
            sock,
            region,
            c2s,
            s2c,
            _irq_c2s: irq_c2s,
            irq_s2c,
            bufs,
        }
    }

    fn buf_off(&self, ring: u32, slot: u32) -> u32 {
        self.bufs + (ring * 16 + slot) * BSIZE
    }

    /// A well-formed descriptor of our buffer `slot` of `ring` (region 0).
    fn desc(&self, ring: u32, slot: u32, length: u32, flags: u16) -> Desc {
        Desc {
            flags,
            region: 0,
            length,
            offset: self.buf_off(ring, slot),
            metadata: 0,
        }
    }

    /// Reads (and so resets) the S2C interrupt eventfd: the signals since the last read, 0
    /// when there were none.
    fn signals(&self) -> u64 {
        let mut b = [0u8; 8];
        match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&self.irq_s2c), &mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            Err(nix::errno::Errno::EAGAIN) => 0,
            other => panic!("eventfd read: {other:?}"),
        }
    }
}

#[test]
fn garbage_and_bad_handshakes_are_counted_and_survived() {
    let name = sock_name("hs");
    let mut server = MemifPort::new("srv", &cfg(&name, MemifRole::Server, 1)).unwrap();

    // 1. Garbage datagram.
    let s = connect_raw(&mut server, &name);
    nix::sys::socket::send(
        std::os::fd::AsRawFd::as_raw_fd(&s),
        b"hello?",
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    expect_disconnect(&mut server, &s, "Invalid message size");
    // Unknown type in a full-size frame.
    let s = connect_raw(&mut server, &name);
    let mut frame = [0u8; 128];
    frame[0] = 42;
    nix::sys::socket::send(
        std::os::fd::AsRawFd::as_raw_fd(&s),
        &frame,
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    expect_disconnect(&mut server, &s, "unknown control message type 42");

    // 2. Wrong interface id.
    let s = connect_raw(&mut server, &name);
    socket::send(&s, &init(99), None).unwrap();
    expect_disconnect(&mut server, &s, "ID not found");

    // 3. ADD_REGION without an fd.
    let s = connect_raw(&mut server, &name);
    socket::send(&s, &init(7), None).unwrap();
    assert_eq!(expect_msg(&mut server, &s), Msg::Ack);
    socket::send(
        &s,
        &Msg::AddRegion(AddRegion {
            index: 0,
            size: 4096,
        }),
        None,
    )
    .unwrap();
    expect_disconnect(&mut server, &s, "Missing region fd");

    // 4. ADD_REGION larger than the file behind the fd.
    let (region, _) = MmapRegion::alloc(8192, "hostile").unwrap();
    let s = connect_raw(&mut server, &name);
    socket::send(&s, &init(7), None).unwrap();
    assert_eq!(expect_msg(&mut server, &s), Msg::Ack);
    let big = Msg::AddRegion(AddRegion {
        index: 0,
        size: 1 << 30,
    });
    socket::send(&s, &big, Some(region.fd())).unwrap();
    expect_disconnect(&mut server, &s, "Cannot map region");

    // 5. ADD_RING outside the region.
    let s = connect_raw(&mut server, &name);
    init_and_add_ring(&mut server, &s, &region, (region.len() - 64) as u32, 10);
    expect_disconnect(&mut server, &s, "Ring outside its region");

    // 6. CONNECT before any ring; 7. a silent peer times out (checked via a fake clock).
    let s = connect_raw(&mut server, &name);
    socket::send(&s, &init(7), None).unwrap();
    assert_eq!(expect_msg(&mut server, &s), Msg::Ack);
    socket::send(
        &s,
        &Msg::Connect {
            if_name: Name::new("x"),
        },
        None,
    )
    .unwrap();
    expect_disconnect(&mut server, &s, "Missing rings");
    let s = connect_raw(&mut server, &name);
    server.poll_control(Instant::now() + Duration::from_secs(4));
    expect_disconnect(&mut server, &s, "Handshake timeout");

    let st = server.stats();
    assert_eq!(st.control_errors, 8, "{st:?}");
    assert_eq!((st.connects, st.disconnects), (0, 0));
    assert!(!server.link_up());

    // A good peer still gets through, and a second peer meanwhile is turned away.
    let mut client = MemifPort::new("cli", &cfg(&name, MemifRole::Client, 1)).unwrap();
    bring_up(&mut server, &mut client);
    let s2 = socket::connect(&SockPath::parse(&name)).unwrap();
    expect_disconnect(&mut server, &s2, "already connected");
    assert!(server.link_up());
    let frames = vec![payload(100, 1)];
    assert_eq!(send(&mut client, 0, &frames), 1);
    assert_eq!(recv(&mut server, 0), frames);
}

#[test]
fn max_ring_size_is_announced_and_enforced() {
    let name = sock_name("maxring");
    let mut scfg = cfg(&name, MemifRole::Server, 1);
    scfg.max_ring_size = Some(3);
    let mut server = MemifPort::new("srv", &scfg).unwrap();

    // HELLO carries the cap; a ring above it is refused with a reason and counted.
    let s = socket::connect(&SockPath::parse(&name)).unwrap();
    match expect_msg(&mut server, &s) {
        Msg::Hello(h) => assert_eq!(h.max_log2_ring_size, 3, "{h:?}"),
        m => panic!("expected HELLO, got {m:?}"),
    }
    let (region, _) = MmapRegion::alloc(ring_bytes(LOG2) + 4096, "maxring").unwrap();
    init_and_add_ring(&mut server, &s, &region, 0, LOG2);
    expect_disconnect(
        &mut server,
        &s,
        "Ring size 2^4 above the 2^3 the server allows",
    );
    assert_eq!(server.stats().control_errors, 1);

    // Our own client asks for 2^6 and takes the server's 2^3; traffic flows both ways.
    let mut client = MemifPort::new("cli", &cfg(&name, MemifRole::Client, 1)).unwrap();
    bring_up(&mut server, &mut client);
    for p in [&server, &client] {
        assert_eq!(p.info().details["ring_size"], 8, "{:?}", p.info());
    }
    assert_eq!(server.info().details["max_ring_size"], 8);
    // Only the client knows the buffer size (it allocated them); the server does not guess.
    assert_eq!(client.info().details["buffer_size"], 2048);
    assert!(!server.info().details.contains_key("buffer_size"));
    assert_eq!(server.info().details["memory"], "peer");
    let frames: Vec<Vec<u8>> = (0..5).map(|i| payload(64 + i, i as u8)).collect();
    assert_eq!(send(&mut client, 0, &frames), 5);
    assert_eq!(recv(&mut server, 0), frames);
    assert_eq!(send(&mut server, 0, &frames), 5);
    assert_eq!(recv(&mut client, 0), frames);
}

#[test]
fn bad_descriptors_are_dropped_and_counted() {
    let name = sock_name("desc");
    let mut server = MemifPort::new("srv", &cfg(&name, MemifRole::Server, 1)).unwrap();
    let raw = RawClient::connect(&mut server, &name, 7);
    let r = &raw.region;
    // The server polls: it masks interrupts on the ring it consumes.
    assert_eq!(raw.c2s.flags(r) & RING_FLAG_MASK_INT, RING_FLAG_MASK_INT);

    let good = |slot: u32, len: u32, flags: u16| raw.desc(0, slot, len, flags);
    let descs = [
        Desc {
            region: 5,
            ..good(0, 60, 0)
        }, // no such region
        Desc {
            offset: r.len() as u32 - 10,
            ..good(1, 60, 0)
        }, // past the end
        Desc {
            offset: u32::MAX - 4,
            ..good(2, 60, 0)
        }, // offset overflow
        good(3, 0, 0),               // empty frame
        good(4, 60, DESC_FLAG_NEXT), // chain with a bad link
        Desc {
            region: 9,
            ..good(5, 60, 0)
        },
        good(6, 70, 0), // fine
    ];
    for (i, d) in descs.iter().enumerate() {
        raw.c2s.write_desc(r, i as u16, d);
    }
    r.seg_mut(raw.buf_off(0, 6) as usize, 70)
        .unwrap()
        .write(0, &payload(70, 3));
    raw.c2s.store_head(r, descs.len() as u16);
    assert_eq!(recv(&mut server, 0), vec![payload(70, 3)]);
    assert_eq!(server.stats().queues[0].drop_bad_desc, 5);
    assert_eq!(
        raw.c2s.load_tail(r),
        descs.len() as u16,
        "bad slots are released too"
    );
    assert!(server.link_up());

    // Server → client with an interrupt-mode client (no MASK_INT on the S2C ring): the client
    // gives 2 buffers; the server fills them and signals the eventfd once per burst.
    for s in 0..2u16 {
        raw.s2c
            .write_desc(r, s, &raw.desc(1, u32::from(s), BSIZE, 0));
    }
    raw.s2c.store_head(r, 2);
    let frames = vec![payload(60, 1), payload(300, 2), payload(60, 3)];
    // 60 bytes fill slot 0; 300 bytes would need 2 buffers with 1 left: dropped; the last 60
    // bytes fill slot 1.
    assert_eq!(send(&mut server, 0, &frames), 2);
    assert_eq!(server.stats().queues[0].drop_ring_full, 1);
    assert_eq!(raw.signals(), 1, "one interrupt per burst");
    assert_eq!(raw.s2c.load_tail(r), 2);
    assert_eq!(raw.s2c.read_desc(r, 0).length, 60);
    let mut got = [0u8; 60];
    r.seg(raw.buf_off(1, 1) as usize, 60)
        .unwrap()
        .read(0, &mut got);
    assert_eq!(got.to_vec(), payload(60, 3));

    // The client lies about a buffer in the middle of a burst (slot 3 of 2..5): offset outside
    // the region. The packet before it is sent, the lie is a protocol violation (the packet
    // dropped as a bad descriptor, the rest of the burst as ring-full), nothing is written
    // into the slots after it.
    for s in [2u16, 4] {
        let d = Desc {
            offset: raw.buf_off(1, u32::from(s)),
            ..good(0, BSIZE, 0)
        };
        raw.s2c.write_desc(r, s, &d);
    }
    raw.s2c.write_desc(
        r,
        3,
        &Desc {
            offset: r.len() as u32,
            ..good(0, BSIZE, 0)
        },
    );
    raw.s2c.store_head(r, 5);
    let before = server.stats().queues[0];
    assert_eq!(send(&mut server, 0, &frames), 1);
    let after = server.stats().queues[0];
    assert_eq!(after.drop_bad_desc - before.drop_bad_desc, 1);
    assert_eq!(after.drop_ring_full - before.drop_ring_full, 1);
    assert_eq!(raw.s2c.load_tail(r), 3);
    assert_eq!(raw.s2c.read_desc(r, 2).length, 60);
    assert_eq!(raw.s2c.read_desc(r, 4).length, BSIZE, "untouched");
    assert_eq!(
        send(&mut server, 0, &frames[..1]),
        0,
        "no traffic after a violation"
    );
    server.poll_control(Instant::now());
    assert!(!server.link_up());
    let st = server.stats();
    assert_eq!((st.control_errors, st.disconnects), (1, 1));
    assert!(st.last_disconnect_reason.unwrap().contains("descriptor"));
    drop(raw);

    // Next peer: head jumps past the ring size. Protocol violation, no panic.
    let raw = RawClient::connect(&mut server, &name, 7);
    raw.c2s.store_head(&raw.region, 100);
    assert!(recv(&mut server, 0).is_empty());
    server.poll_control(Instant::now());
    assert!(!server.link_up());
    assert_eq!(server.stats().control_errors, 2);
    assert!(matches!(
        socket::recv(&raw.sock),
        Some(Incoming::Msg(Msg::Disconnect(_), _))
    ));
}

/// The server signals the S2C eventfd only while the client has not set MASK_INT. The flag
/// is cached (it shares a cache line with the head the client writes on every refill): it is
/// reloaded with the head and at every control tick; a client that unmasked while the cache
/// said masked gets its signal at the next tick, and none is lost or doubled.
#[test]
fn interrupts_follow_the_clients_mask_flag() {
    let name = sock_name("irq");
    let mut server = MemifPort::new("srv", &cfg(&name, MemifRole::Server, 1)).unwrap();
    let raw = RawClient::connect(&mut server, &name, 7);
    let r = &raw.region;
    let frame = vec![payload(60, 1)];
    // The client polls (MASK_INT) and gives 4 buffers: the server loads the head with the
    // flag and does not signal.
    raw.s2c.store_flags(r, RING_FLAG_MASK_INT);
    for s in 0..4u16 {
        raw.s2c
            .write_desc(r, s, &raw.desc(1, u32::from(s), BSIZE, 0));
    }
    raw.s2c.store_head(r, 4);
    assert_eq!(send(&mut server, 0, &frame), 1);
    assert_eq!(raw.signals(), 0, "masked: no signal");
    // The client unmasks; the server still has room from the head it loaded, so it sends on
    // its cached flag without a signal ...
    raw.s2c.store_flags(r, 0);
    assert_eq!(send(&mut server, 0, &frame), 1);
    assert_eq!(raw.signals(), 0, "cached flag: not yet");
    // ... and the control tick delivers it, once.
    server.tick();
    assert_eq!(raw.signals(), 1, "signalled at the tick");
    server.tick();
    assert_eq!(raw.signals(), 0, "nothing unsignalled: no second signal");
    // Now known unmasked: every burst signals.
    assert_eq!(send(&mut server, 0, &frame), 1);
    assert_eq!(raw.signals(), 1);
    // Masked again: the tick learns it, then bursts stay silent and the tick adds nothing.
    raw.s2c.store_flags(r, RING_FLAG_MASK_INT);
    server.tick();
    assert_eq!(send(&mut server, 0, &frame), 1);
    server.tick();
    assert_eq!(raw.signals(), 0);
    assert_eq!(raw.s2c.load_tail(r), 4, "all four frames sent");
    assert!(server.link_up());
}

/// Runs in a child process (alone, so no other test's fds or mappings disturb the counts).
#[test]
fn no_fd_or_mapping_leaks_over_20_reconnects() {
    if std::env::var_os("USWITCH_LEAK_CHILD").is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "memif::hostile_tests::leak_child",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("USWITCH_LEAK_CHILD", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("leak_child ... ok") && text.contains("1 passed"),
        "{text}"
    );
}

fn counts() -> (usize, usize) {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count();
    (fds, maps)
}

#[test]
fn leak_child() {
    if std::env::var_os("USWITCH_LEAK_CHILD").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leak.sock");
    let p = path.to_str().unwrap();
    let mut server = MemifPort::new("srv", &cfg(p, MemifRole::Server, 2)).unwrap();
    // Warm up once (lazy allocations in the runtime, thread-locals).
    let mut client = MemifPort::new("cli", &cfg(p, MemifRole::Client, 2)).unwrap();
    bring_up(&mut server, &mut client);
    drop(client);
    while server.link_up() {
        server.poll_control(Instant::now());
    }
    let base = counts();
    for i in 0..20 {
        let mut client = MemifPort::new("cli", &cfg(p, MemifRole::Client, 2)).unwrap();
        bring_up(&mut server, &mut client);
        let f = vec![payload(3000, i as u8)];
        assert_eq!(send(&mut client, 1, &f), 1);
        assert_eq!(recv(&mut server, 1), f);
        assert_ne!(counts(), base, "connected: more fds/mappings");
        drop(client);
        let t0 = Instant::now();
        while server.link_up() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "timed out waiting for link down"
            );
            server.poll_control(Instant::now());
        }
        assert_eq!(counts(), base, "after reconnect {i}");
    }
    assert_eq!(server.stats().connects, 21);
    drop(server);
    assert!(!path.exists());
}

/// Client role against a raw server: a bad HELLO is refused (counted, DISCONNECT sent), the
/// client backs off and retries, and a good server afterwards gets a working link.
#[test]
fn client_refuses_bad_hello_and_retries() {
    let name = sock_name("cli");
    let path = SockPath::parse(&name);
    let listener = socket::listen(&path).unwrap();
    let mut client = MemifPort::new("cli", &cfg(&name, MemifRole::Client, 1)).unwrap();
    let accept = |client: &mut MemifPort| -> OwnedFd {
        let t0 = Instant::now();
        loop {
            client.poll_control(Instant::now());
            if let Some(s) = socket::accept(&listener).unwrap() {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "client never connected"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let hello = |min: u16, max: u16| {
        Msg::Hello(crate::memif::wire::Hello {
            name: Name::new("rawsrv"),
            min_version: min,
            max_version: max,
            max_region: 0,
            max_s2c_ring: 0,
            max_c2s_ring: 0,
            max_log2_ring_size: 10,
        })
    };
    // Version 3.0 only.
    let s = accept(&mut client);
    socket::send(&s, &hello(0x300, 0x300), None).unwrap();
    expect_disconnect(&mut client, &s, "Incompatible memif version");
    assert_eq!(client.stats().control_errors, 1);
    // Garbage instead of HELLO.
    let s = accept(&mut client);
    socket::send(&s, &Msg::Ack, None).unwrap();
    expect_disconnect(&mut client, &s, "Unexpected message ACK");
    assert_eq!(client.stats().control_errors, 2);
    // A server that accepts and then vanishes mid-handshake.
    let s = accept(&mut client);
    socket::send(&s, &hello(VERSION, VERSION), None).unwrap();
    assert!(matches!(expect_msg(&mut client, &s), Msg::Init(_)));
    drop(s);
    drop(listener);
    let t0 = Instant::now();
    while client.info().details["state"] != "waiting" {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for link down"
        );
        client.poll_control(Instant::now());
    }
    assert!(!client.link_up());
    // Now a real server on the same name.
    let mut server = MemifPort::new("srv", &cfg(&name, MemifRole::Server, 1)).unwrap();
    bring_up(&mut server, &mut client);
    assert_eq!(client.info().peer_name.as_deref(), Some("uswitch"));
}
