//! memif v2.0 wire formats: control messages and the shared-memory ring layout.
//!
//! No I/O, no `unsafe`: this module turns bytes into typed values and back.
//!
//! Control messages (checked against DPDK `drivers/net/memif/memif.h`) are always
//! [`MSG_SIZE`] = 128 bytes: a little-endian `u16` type, then a *packed* union starting at byte 2.
//!
//! | type | message    | body (packed, little endian)                                               |
//! |------|------------|----------------------------------------------------------------------------|
//! | 0    | NONE       | -                                                                          |
//! | 1    | ACK        | -                                                                          |
//! | 2    | HELLO      | name[32], min_version u16, max_version u16, max_region u16,                |
//! |      |            | max_s2c_ring u16 (DPDK "m2s"), max_c2s_ring u16 (DPDK "s2m"), max_log2 u8  |
//! | 3    | INIT       | version u16, id u32, mode u8, secret[24], name[32]                         |
//! | 4    | ADD_REGION | index u16, size u64 (region fd as SCM_RIGHTS)                              |
//! | 5    | ADD_RING   | flags u16 (bit0: ring is client→server), index u16, region u16,            |
//! |      |            | offset u32, log2_ring_size u8, private_hdr_size u16 (eventfd as SCM_RIGHTS)|
//! | 6, 7 | CONNECT(ED)| if_name[32]                                                                |
//! | 8    | DISCONNECT | code u32, string[96]                                                       |
//!
//! Two details differ from a naive reading of the protocol and are easy to get wrong:
//! HELLO lists the server→client ("m2s") ring limit *before* the client→server ("s2m") one, and
//! ADD_RING flag bit 0 (`MEMIF_MSG_ADD_RING_FLAG_S2M`) marks a **client→server** ring. The `max_*`
//! fields of HELLO are highest indices (count - 1) in the protocol's intent; DPDK sends its queue
//! count there, so receivers must treat them only as upper bounds.
//!
//! Rules enforced by [`parse`]: exact length, known type, known mode; names and strings are
//! NUL-terminated (or full-width) byte strings decoded lossily. [`emit`] zero-fills all padding.
//!
//! Ring layout (shared memory, 64-byte cache lines): cookie u32 @0, flags u16 @4 (bit0 MASK_INT),
//! head u16 @6, tail u16 @64, descriptors @128; each descriptor is 16 bytes
//! {flags u16 (bit0 NEXT), region u16, length u32, offset u32, metadata u32}.

/// Every control message is exactly this long.
pub const MSG_SIZE: usize = 128;
/// Protocol version 2.0.
pub const VERSION: u16 = 0x0200;
/// Ring header cookie.
pub const COOKIE: u32 = 0x3E31F20;
pub const NAME_SZ: usize = 32;
pub const SECRET_SZ: usize = 24;
pub const DISC_STRING_SZ: usize = 96;

/// Ring header field offsets and sizes.
pub const RING_COOKIE_OFF: usize = 0;
pub const RING_FLAGS_OFF: usize = 4;
pub const RING_HEAD_OFF: usize = 6;
pub const RING_TAIL_OFF: usize = 64;
pub const RING_DESC_OFF: usize = 128;
pub const RING_HDR_SIZE: usize = 128;
/// Ring header flag: the receiver polls, do not signal its eventfd.
pub const RING_FLAG_MASK_INT: u16 = 1;
pub const DESC_SIZE: usize = 16;
/// Descriptor flag: the packet continues in the next descriptor.
pub const DESC_FLAG_NEXT: u16 = 1;

const _: () = assert!(RING_HEAD_OFF + 2 <= RING_TAIL_OFF);
const _: () = assert!(RING_TAIL_OFF & 63 == 0 && RING_DESC_OFF & 63 == 0);
const _: () = assert!(RING_DESC_OFF == RING_HDR_SIZE);

/// Bytes one ring with `1 << log2` descriptors occupies.
pub const fn ring_bytes(log2: u8) -> usize {
    RING_HDR_SIZE + DESC_SIZE * (1usize << log2)
}

// Body sizes (packed), all must fit the 126 bytes after the type.
const HELLO_LEN: usize = NAME_SZ + 2 * 5 + 1;
const INIT_LEN: usize = 2 + 4 + 1 + SECRET_SZ + NAME_SZ;
const ADD_REGION_LEN: usize = 2 + 8;
const ADD_RING_LEN: usize = 2 + 2 + 2 + 4 + 1 + 2;
const DISC_LEN: usize = 4 + DISC_STRING_SZ;
const _: () = assert!(HELLO_LEN == 43 && INIT_LEN == 63 && ADD_REGION_LEN == 10);
const _: () = assert!(ADD_RING_LEN == 13 && DISC_LEN == 100);
const _: () = assert!(2 + DISC_LEN <= MSG_SIZE && 2 + INIT_LEN <= MSG_SIZE);

/// Message type codes.
pub mod msg_type {
    pub const NONE: u16 = 0;
    pub const ACK: u16 = 1;
    pub const HELLO: u16 = 2;
    pub const INIT: u16 = 3;
    pub const ADD_REGION: u16 = 4;
    pub const ADD_RING: u16 = 5;
    pub const CONNECT: u16 = 6;
    pub const CONNECTED: u16 = 7;
    pub const DISCONNECT: u16 = 8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("control message is {0} bytes, expected 128")]
    BadLength(usize),
    #[error("unknown control message type {0}")]
    UnknownType(u16),
    #[error("unknown interface mode {0}")]
    BadMode(u8),
}

/// Interface mode carried in INIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ethernet = 0,
    Ip = 1,
    PuntInject = 2,
}

impl Mode {
    fn from_u8(v: u8) -> Result<Mode, WireError> {
        match v {
            0 => Ok(Mode::Ethernet),
            1 => Ok(Mode::Ip),
            2 => Ok(Mode::PuntInject),
            _ => Err(WireError::BadMode(v)),
        }
    }
}

/// Direction of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingDir {
    /// Client → server (DPDK "S2M"); ADD_RING flag bit 0 set.
    C2S,
    /// Server → client (DPDK "M2S"); ADD_RING flag bit 0 clear.
    S2C,
}

/// A fixed-size, NUL-padded byte string (names, secret, reason).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FixedStr<const N: usize>(pub [u8; N]);

impl<const N: usize> FixedStr<N> {
    /// Copies `s`, truncated to `N - 1` bytes so a NUL always follows (as `strlcpy` does).
    pub fn new(s: &str) -> Self {
        let mut b = [0u8; N];
        let n = s.len().min(N.saturating_sub(1));
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        FixedStr(b)
    }
    /// Copies up to `N` bytes with no terminator required (the memif secret is compared over
    /// all 24 bytes).
    pub fn new_full(s: &[u8]) -> Self {
        let mut b = [0u8; N];
        let n = s.len().min(N);
        b[..n].copy_from_slice(&s[..n]);
        FixedStr(b)
    }
    /// The bytes up to the first NUL.
    pub fn bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(N);
        &self.0[..end]
    }
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        FixedStr([0; N])
    }
}

impl<const N: usize> std::fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

pub type Name = FixedStr<NAME_SZ>;
pub type Secret = FixedStr<SECRET_SZ>;
pub type Reason = FixedStr<DISC_STRING_SZ>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub name: Name,
    pub min_version: u16,
    pub max_version: u16,
    pub max_region: u16,
    /// Highest server→client ring index the server accepts (DPDK `max_m2s_ring`).
    pub max_s2c_ring: u16,
    /// Highest client→server ring index the server accepts (DPDK `max_s2m_ring`).
    pub max_c2s_ring: u16,
    pub max_log2_ring_size: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Init {
    pub version: u16,
    pub id: u32,
    pub mode: Mode,
    pub secret: Secret,
    pub name: Name,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddRegion {
    pub index: u16,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddRing {
    pub dir: RingDir,
    pub index: u16,
    pub region: u16,
    pub offset: u32,
    pub log2_ring_size: u8,
    pub private_hdr_size: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u32,
    pub reason: Reason,
}

/// A parsed control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    None,
    Ack,
    Hello(Hello),
    Init(Init),
    AddRegion(AddRegion),
    AddRing(AddRing),
    Connect { if_name: Name },
    Connected { if_name: Name },
    Disconnect(Disconnect),
}

impl Msg {
    /// Short name for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::None => "NONE",
            Msg::Ack => "ACK",
            Msg::Hello(_) => "HELLO",
            Msg::Init(_) => "INIT",
            Msg::AddRegion(_) => "ADD_REGION",
            Msg::AddRing(_) => "ADD_RING",
            Msg::Connect { .. } => "CONNECT",
            Msg::Connected { .. } => "CONNECTED",
            Msg::Disconnect(_) => "DISCONNECT",
        }
    }
    pub fn disconnect(code: u32, reason: &str) -> Msg {
        Msg::Disconnect(Disconnect {
            code,
            reason: Reason::new(reason),
        })
    }
}

/// Little-endian reader over the body (bytes 2..128); offsets are relative to the body.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn u8(&self, o: usize) -> u8 {
        self.0[o]
    }
    fn u16(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.0[o], self.0[o + 1]])
    }
    fn u32(&self, o: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[o..o + 4]);
        u32::from_le_bytes(b)
    }
    fn u64(&self, o: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[o..o + 8]);
        u64::from_le_bytes(b)
    }
    fn arr<const N: usize>(&self, o: usize) -> FixedStr<N> {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.0[o..o + N]);
        FixedStr(b)
    }
}

/// Parses one control message. `buf` must be exactly [`MSG_SIZE`] bytes.
pub fn parse(buf: &[u8]) -> Result<Msg, WireError> {
    if buf.len() != MSG_SIZE {
        return Err(WireError::BadLength(buf.len()));
    }
    let ty = u16::from_le_bytes([buf[0], buf[1]]);
    let b = Body(&buf[2..]);
    Ok(match ty {
        msg_type::NONE => Msg::None,
        msg_type::ACK => Msg::Ack,
        msg_type::HELLO => Msg::Hello(Hello {
            name: b.arr(0),
            min_version: b.u16(32),
            max_version: b.u16(34),
            max_region: b.u16(36),
            max_s2c_ring: b.u16(38),
            max_c2s_ring: b.u16(40),
            max_log2_ring_size: b.u8(42),
        }),
        msg_type::INIT => Msg::Init(Init {
            version: b.u16(0),
            id: b.u32(2),
            mode: Mode::from_u8(b.u8(6))?,
            secret: b.arr(7),
            name: b.arr(31),
        }),
        msg_type::ADD_REGION => Msg::AddRegion(AddRegion {
            index: b.u16(0),
            size: b.u64(2),
        }),
        msg_type::ADD_RING => {
            let flags = b.u16(0);
            Msg::AddRing(AddRing {
                dir: if flags & 1 != 0 {
                    RingDir::C2S
                } else {
                    RingDir::S2C
                },
                index: b.u16(2),
                region: b.u16(4),
                offset: b.u32(6),
                log2_ring_size: b.u8(10),
                private_hdr_size: b.u16(11),
            })
        }
        msg_type::CONNECT => Msg::Connect { if_name: b.arr(0) },
        msg_type::CONNECTED => Msg::Connected { if_name: b.arr(0) },
        msg_type::DISCONNECT => Msg::Disconnect(Disconnect {
            code: b.u32(0),
            reason: b.arr(4),
        }),
        other => return Err(WireError::UnknownType(other)),
    })
}

/// Little-endian writer over the body.
struct BodyMut<'a>(&'a mut [u8]);

impl BodyMut<'_> {
    fn u8(&mut self, o: usize, v: u8) {
        self.0[o] = v;
    }
    fn u16(&mut self, o: usize, v: u16) {
        self.0[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, o: usize, v: u32) {
        self.0[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, o: usize, v: u64) {
        self.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn arr<const N: usize>(&mut self, o: usize, v: &FixedStr<N>) {
        self.0[o..o + N].copy_from_slice(&v.0);
    }
}

/// Serialises a control message into its 128-byte frame (padding zeroed).
pub fn emit(msg: &Msg) -> [u8; MSG_SIZE] {
    let mut out = [0u8; MSG_SIZE];
    let ty = match msg {
        Msg::None => msg_type::NONE,
        Msg::Ack => msg_type::ACK,
        Msg::Hello(_) => msg_type::HELLO,
        Msg::Init(_) => msg_type::INIT,
        Msg::AddRegion(_) => msg_type::ADD_REGION,
        Msg::AddRing(_) => msg_type::ADD_RING,
        Msg::Connect { .. } => msg_type::CONNECT,
        Msg::Connected { .. } => msg_type::CONNECTED,
        Msg::Disconnect(_) => msg_type::DISCONNECT,
    };
    out[..2].copy_from_slice(&ty.to_le_bytes());
    let mut b = BodyMut(&mut out[2..]);
    match msg {
        Msg::None | Msg::Ack => {}
        Msg::Hello(h) => {
            b.arr(0, &h.name);
            b.u16(32, h.min_version);
            b.u16(34, h.max_version);
            b.u16(36, h.max_region);
            b.u16(38, h.max_s2c_ring);
            b.u16(40, h.max_c2s_ring);
            b.u8(42, h.max_log2_ring_size);
        }
        Msg::Init(i) => {
            b.u16(0, i.version);
            b.u32(2, i.id);
            b.u8(6, i.mode as u8);
            b.arr(7, &i.secret);
            b.arr(31, &i.name);
        }
        Msg::AddRegion(r) => {
            b.u16(0, r.index);
            b.u64(2, r.size);
        }
        Msg::AddRing(r) => {
            b.u16(0, if r.dir == RingDir::C2S { 1 } else { 0 });
            b.u16(2, r.index);
            b.u16(4, r.region);
            b.u32(6, r.offset);
            b.u8(10, r.log2_ring_size);
            b.u16(11, r.private_hdr_size);
        }
        Msg::Connect { if_name } | Msg::Connected { if_name } => b.arr(0, if_name),
        Msg::Disconnect(d) => {
            b.u32(0, d.code);
            b.arr(4, &d.reason);
        }
    }
    out
}

/// A ring descriptor, as copied out of (or into) shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Desc {
    pub flags: u16,
    pub region: u16,
    pub length: u32,
    pub offset: u32,
    pub metadata: u32,
}

impl Desc {
    #[inline]
    pub fn from_bytes(b: &[u8; DESC_SIZE]) -> Desc {
        let r = Body(b);
        Desc {
            flags: r.u16(0),
            region: r.u16(2),
            length: r.u32(4),
            offset: r.u32(8),
            metadata: r.u32(12),
        }
    }
    #[inline]
    pub fn to_bytes(&self) -> [u8; DESC_SIZE] {
        let mut out = [0u8; DESC_SIZE];
        let mut w = BodyMut(&mut out);
        w.u16(0, self.flags);
        w.u16(2, self.region);
        w.u32(4, self.length);
        w.u32(8, self.offset);
        w.u32(12, self.metadata);
        out
    }
    #[inline]
    pub fn has_next(&self) -> bool {
        self.flags & DESC_FLAG_NEXT != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u16, body: &[u8]) -> [u8; 128] {
        let mut f = [0u8; 128];
        f[..2].copy_from_slice(&ty.to_le_bytes());
        f[2..2 + body.len()].copy_from_slice(body);
        f
    }

    #[test]
    fn hello_fixture() {
        // Built by hand from memif.h: name "DPDK 22.11.0", versions 0x0200, max_region 255,
        // max_m2s_ring 1, max_s2m_ring 2, max_log2 14.
        let mut body = vec![0u8; 43];
        body[..12].copy_from_slice(b"DPDK 22.11.0");
        body[32..43].copy_from_slice(&[
            0x00, 0x02, 0x00, 0x02, 0xff, 0x00, 0x01, 0x00, 0x02, 0x00, 14,
        ]);
        let f = frame(2, &body);
        let m = parse(&f).unwrap();
        let Msg::Hello(h) = m else { panic!("{m:?}") };
        assert_eq!(h.name.to_string_lossy(), "DPDK 22.11.0");
        assert_eq!(
            (h.min_version, h.max_version, h.max_region),
            (0x200, 0x200, 255)
        );
        assert_eq!(
            (h.max_s2c_ring, h.max_c2s_ring, h.max_log2_ring_size),
            (1, 2, 14)
        );
        assert_eq!(emit(&m), f);
    }

    #[test]
    fn init_fixture() {
        let mut body = vec![0u8; 63];
        body[..7].copy_from_slice(&[0x00, 0x02, 0x78, 0x56, 0x34, 0x12, 0x00]);
        body[7..13].copy_from_slice(b"s3cr3t");
        body[31..35].copy_from_slice(b"vpp1");
        let f = frame(3, &body);
        let m = parse(&f).unwrap();
        let Msg::Init(i) = m else { panic!() };
        assert_eq!(
            (i.version, i.id, i.mode),
            (0x200, 0x1234_5678, Mode::Ethernet)
        );
        assert_eq!(i.secret.bytes(), b"s3cr3t");
        assert_eq!(i.name.to_string_lossy(), "vpp1");
        assert_eq!(emit(&m), f);
        // Mode 3 does not exist.
        let mut bad = f;
        bad[8] = 3;
        assert_eq!(parse(&bad), Err(WireError::BadMode(3)));
    }

    #[test]
    fn add_region_and_ring_fixtures() {
        let f = frame(
            4,
            &[0x01, 0x00, 0x00, 0x10, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00],
        );
        let m = parse(&f).unwrap();
        assert_eq!(
            m,
            Msg::AddRegion(AddRegion {
                index: 1,
                size: 0x22_1000
            })
        );
        assert_eq!(emit(&m), f);

        // flags 1 (C2S), index 3, region 0, offset 0x480, log2 10, private_hdr 0.
        let f = frame(
            5,
            &[
                0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x80, 0x04, 0, 0, 10, 0, 0,
            ],
        );
        let m = parse(&f).unwrap();
        let want = AddRing {
            dir: RingDir::C2S,
            index: 3,
            region: 0,
            offset: 0x480,
            log2_ring_size: 10,
            private_hdr_size: 0,
        };
        assert_eq!(m, Msg::AddRing(want));
        assert_eq!(emit(&m), f);
        let f2 = frame(
            5,
            &[
                0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x80, 0x04, 0, 0, 10, 0, 0,
            ],
        );
        assert_eq!(
            parse(&f2).unwrap(),
            Msg::AddRing(AddRing {
                dir: RingDir::S2C,
                ..want
            })
        );
    }

    #[test]
    fn connect_disconnect_fixtures() {
        let f = frame(6, b"memif0\0");
        assert_eq!(
            parse(&f).unwrap(),
            Msg::Connect {
                if_name: Name::new("memif0")
            }
        );
        assert_eq!(emit(&parse(&f).unwrap()), f);
        let f = frame(7, b"net_memif0");
        assert_eq!(
            parse(&f).unwrap(),
            Msg::Connected {
                if_name: Name::new("net_memif0")
            }
        );
        let mut body = vec![0x05, 0, 0, 0];
        body.extend_from_slice(b"ID not found");
        let f = frame(8, &body);
        let m = parse(&f).unwrap();
        assert_eq!(m, Msg::disconnect(5, "ID not found"));
        assert_eq!(emit(&m), f);
        assert_eq!(emit(&Msg::Ack), frame(1, &[]));
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(parse(&[0u8; 127]), Err(WireError::BadLength(127)));
        assert_eq!(parse(&[0u8; 129]), Err(WireError::BadLength(129)));
        assert_eq!(parse(&frame(9, &[])), Err(WireError::UnknownType(9)));
        assert_eq!(
            parse(&frame(0xffff, &[])),
            Err(WireError::UnknownType(0xffff))
        );
        assert_eq!(parse(&frame(0, &[1, 2, 3])), Ok(Msg::None));
    }

    #[test]
    fn names_are_lossy_and_bounded() {
        // Full 32 bytes, no NUL, invalid UTF-8 inside.
        let mut body = [b'a'; 32];
        body[3] = 0xff;
        let m = parse(&frame(6, &body)).unwrap();
        let Msg::Connect { if_name } = m else {
            panic!()
        };
        assert_eq!(if_name.bytes().len(), 32);
        assert!(if_name.to_string_lossy().contains('\u{fffd}'));
        // Creation truncates to 31 so a NUL follows.
        assert_eq!(Name::new(&"x".repeat(40)).bytes().len(), 31);
        assert_eq!(Secret::new_full(&[b'k'; 24]).bytes().len(), 24);
    }

    #[test]
    fn desc_fixture() {
        let b = [
            0x01, 0x00, 0x02, 0x00, 0x00, 0x08, 0, 0, 0x00, 0x10, 0, 0, 0xef, 0xbe, 0xad, 0xde,
        ];
        let d = Desc::from_bytes(&b);
        assert_eq!(
            d,
            Desc {
                flags: 1,
                region: 2,
                length: 2048,
                offset: 0x1000,
                metadata: 0xdead_beef
            }
        );
        assert!(d.has_next());
        assert_eq!(d.to_bytes(), b);
        assert_eq!(ring_bytes(10), 128 + 16 * 1024);
    }
}
