//! Declarations of the C shim (`shim.c`): the only DPDK entry points Rust uses. Hand-written,
//! and only what is used. DPDK structs never cross: mempools and mbufs are opaque pointers,
//! counters come back in `u64` arrays, names in byte buffers.
//!
//! Calling any of these is `unsafe`: the callers (in [`super::eal`] and [`super::port`]) pass
//! pointers they own and port ids they have set up; see their `// SAFETY:` comments.
use std::os::raw::{c_char, c_int, c_uint};

/// `struct rte_mempool` (opaque).
#[repr(C)]
pub struct RteMempool {
    _opaque: [u8; 0],
}

/// `struct rte_mbuf` (opaque).
#[repr(C)]
pub struct RteMbuf {
    _opaque: [u8; 0],
}

extern "C" {
    pub fn usw_errno() -> c_int;
    pub fn usw_strerror(err: c_int) -> *const c_char;
    pub fn usw_version() -> *const c_char;
    pub fn usw_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
    pub fn usw_thread_register() -> c_int;

    pub fn usw_pool_create(
        name: *const c_char,
        n: c_uint,
        cache: c_uint,
        socket: c_int,
    ) -> *mut RteMempool;
    pub fn usw_pool_avail(mp: *const RteMempool) -> c_uint;
    pub fn usw_pool_size(mp: *const RteMempool) -> c_uint;
    pub fn usw_pool_room(mp: *mut RteMempool) -> c_uint;

    pub fn usw_dev_probe(devargs: *const c_char) -> c_int;
    pub fn usw_port_by_name(name: *const c_char, port: *mut u16) -> c_int;
    pub fn usw_port_socket(port: u16) -> c_int;
    pub fn usw_port_setup(
        port: u16,
        nq: u16,
        nrxd: u16,
        ntxd: u16,
        mp: *mut RteMempool,
        what: *mut c_char,
        what_len: usize,
    ) -> c_int;
    pub fn usw_port_close(port: u16, remove: c_int) -> c_int;
    pub fn usw_port_driver(port: u16, out: *mut c_char, len: usize) -> c_int;
    pub fn usw_port_mac(port: u16, out: *mut u8) -> c_int;
    pub fn usw_port_link(port: u16, speed: *mut u32) -> c_int;
    pub fn usw_port_stats(port: u16, out: *mut u64) -> c_int;
    pub fn usw_port_stats_reset(port: u16) -> c_int;

    pub fn usw_rx_burst(port: u16, q: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    pub fn usw_tx_burst(port: u16, q: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    pub fn usw_mbuf_seg(m: *mut RteMbuf, data: *mut *const u8, len: *mut u32) -> *mut RteMbuf;
    pub fn usw_mbuf_free_bulk(m: *mut *mut RteMbuf, n: c_uint);
    pub fn usw_mbuf_alloc_bulk(mp: *mut RteMempool, m: *mut *mut RteMbuf, n: c_uint) -> c_int;
    pub fn usw_mbuf_room(m: *mut RteMbuf, room: *mut u32) -> *mut u8;
    pub fn usw_mbuf_set_len(m: *mut RteMbuf, len: u32);
}

/// `rte_strerror` text of a (negative or positive) errno.
pub fn strerror(err: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
    // string, valid at least until the next call on this thread; copied out at once.
    unsafe {
        let p = usw_strerror(err);
        if p.is_null() {
            return format!("error {err}");
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The DPDK version string of the linked library (`rte_version()`).
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(usw_version()) }
        .to_string_lossy()
        .into_owned()
}
