//! A set of memif client links sharing ONE region and ONE buffer pool.
//!
//! Memory: region 0 holds, for each link and queue pair, its C2S ring then its S2C ring, then
//! (page aligned) `2 × links × queues × ring size` buffers of `buffer size` bytes, each starting
//! [`buffer_stride`] bytes after the previous one (an odd number of cache lines, as DPDK's
//! mempool pads its objects: with a power-of-two stride every buffer's first line falls in the
//! same few cache sets, and 16 links' buffers contend for 1/32 of the L2). Every link announces
//! the same region fd to its server, so any buffer is valid on any link: a buffer the server
//! filled on link A's S2C ring can be posted on link B's C2S ring by writing a descriptor — the
//! zero-copy reflector ([`Endpoint::forward`]) does exactly that and never touches packet bytes.
//!
//! Buffer ownership (one owner per buffer, tracked locally, never read back from shared memory):
//! - in the pool (ours, free);
//! - posted on a link's S2C ring: the server's until it publishes it (S2C `tail`); then ours
//!   until we consume it; the offset comes from our shadow array `rx_bufs`, the server only
//!   supplies the length (checked against the buffer size);
//! - posted on a link's C2S ring: the server's until its `tail` passes it; then back to the pool
//!   (offset from our shadow array `tx_bufs`).
//!
//! The pool holds as many buffers as all rings together, so it never runs dry while a ring has
//! room.
//!
//! Ordering (as in `uswitch::memif::ring`): we write descriptors (and bytes), then
//! `head.store(Release)`; we `tail.load(Acquire)` before reading what the server published.
//! A server counter outside the range we handed out marks the link down (protocol violation).
//! Hot path: no allocation, no locks; one eventfd write per C2S burst only when the server did
//! not set MASK_INT.
use crate::error::BenchError;
use crate::handshake::{self, RingPlace};
use std::os::fd::OwnedFd;
use std::time::Duration;
use uswitch::memif::ring::Ring;
use uswitch::memif::socket::{self, Incoming};
use uswitch::memif::wire::{ring_bytes, Desc, Msg, DESC_FLAG_NEXT, RING_FLAG_MASK_INT};
use uswitch::shm::{MmapRegion, Seg, SegMut};

/// Options shared by every link of an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointOpts {
    /// Queue pairs per link (OVS-DPDK needs 2: its PMD thread transmits on queue 1).
    pub queues: u16,
    pub log2_ring: u8,
    pub buffer_size: u32,
    pub timeout: Duration,
    pub secret: Option<String>,
}

/// Bytes from one buffer's start to the next: `buffer_size` rounded up to whole cache lines,
/// plus one line when that is an even number of lines. An odd number of lines spreads the
/// buffers' first lines over every cache set; a stride of 2048 bytes puts them all in 1/32 of
/// an L2's sets (2 of an L1's 64), where 16 links' buffers evict each other.
pub fn buffer_stride(buffer_size: u32) -> u32 {
    let lines = buffer_size.div_ceil(64).max(1);
    64 * (lines | 1)
}

/// Counters of one link (plain integers owned by the polling thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Descriptors from the server with a zero or too large length (buffer dropped).
    pub bad_desc: u64,
}

impl LinkStats {
    pub fn delta(&self, earlier: &LinkStats) -> LinkStats {
        LinkStats {
            rx_packets: self.rx_packets - earlier.rx_packets,
            rx_bytes: self.rx_bytes - earlier.rx_bytes,
            tx_packets: self.tx_packets - earlier.tx_packets,
            tx_bytes: self.tx_bytes - earlier.tx_bytes,
            bad_desc: self.bad_desc - earlier.bad_desc,
        }
    }
}

/// Marks a link down for a server protocol violation (first reason wins).
fn violation(down: &mut Option<String>, what: &str) {
    if down.is_none() {
        *down = Some(format!("protocol violation by the server: {what}"));
    }
}

/// One queue pair of a link: its two rings and our side of their counters.
pub struct Queue {
    c2s_irq: OwnedFd,
    _s2c_irq: OwnedFd,
    c2s: Ring,
    s2c: Ring,
    mask: u16,
    size: u16,
    /// C2S: our head, and the counter up to which buffers came back.
    tx_head: u16,
    tx_done: u16,
    /// S2C: next counter to consume, and our head (buffers handed to the server).
    rx_cursor: u16,
    rx_head: u16,
    tx_bufs: Vec<u32>,
    rx_bufs: Vec<u32>,
}

/// One memif connection with one or more queue pairs.
pub struct Link {
    pub socket: String,
    pub peer_name: String,
    sock: OwnedFd,
    pub qs: Vec<Queue>,
    /// Why the link went down (None while up).
    pub down: Option<String>,
    pub st: LinkStats,
}

impl Link {
    #[inline]
    pub fn is_up(&self) -> bool {
        self.down.is_none()
    }

    fn violation(&mut self, what: &str) {
        violation(&mut self.down, what);
    }

    /// C2S descriptors the server has not consumed yet (all queues).
    pub fn tx_in_flight(&self) -> u32 {
        self.qs
            .iter()
            .map(|q| u32::from(q.tx_head.wrapping_sub(q.tx_done)))
            .sum()
    }
}

impl Queue {
    /// Returns the buffers the server finished with on our C2S ring to the pool; Err on a
    /// server tail beyond our head.
    #[inline]
    fn reclaim(&mut self, r: &MmapRegion, pool: &mut Vec<u32>) -> Result<(), &'static str> {
        let tail = self.c2s.load_tail(r);
        let done = tail.wrapping_sub(self.tx_done);
        if done == 0 {
            return Ok(());
        }
        if done > self.tx_head.wrapping_sub(self.tx_done) {
            return Err("C2S tail beyond our head");
        }
        for k in 0..done {
            pool.push(self.tx_bufs[usize::from(self.tx_done.wrapping_add(k) & self.mask)]);
        }
        self.tx_done = tail;
        Ok(())
    }

    /// Free C2S slots.
    #[inline]
    fn tx_room(&self) -> u16 {
        self.size - self.tx_head.wrapping_sub(self.tx_done)
    }

    /// Prefetch hint for taking the next `n` S2C descriptors (written by the server's core).
    #[inline]
    fn prefetch_rx(&self, r: &MmapRegion, n: u16) {
        if let Some(d) = self.s2c.descs(r) {
            d.prefetch(self.rx_cursor, n, false);
        }
    }

    /// Prefetch hint for posting the next `n` C2S descriptors: the server's core last read
    /// them; fetched exclusive, our stores do not stall on them one by one.
    #[inline]
    fn prefetch_tx(&self, r: &MmapRegion, n: u16) {
        if let Some(d) = self.c2s.descs(r) {
            d.prefetch(self.tx_head, n, true);
        }
    }

    #[inline]
    fn post_tx(&mut self, r: &MmapRegion, offset: u32, length: u32, flags: u16) {
        let d = Desc {
            flags,
            region: 0,
            length,
            offset,
            metadata: 0,
        };
        self.c2s.write_desc(r, self.tx_head, &d);
        self.tx_bufs[usize::from(self.tx_head & self.mask)] = offset;
        self.tx_head = self.tx_head.wrapping_add(1);
    }

    /// Publishes the C2S head and kicks the server if it wants interrupts.
    #[inline]
    fn publish_tx(&self, r: &MmapRegion) {
        self.c2s.store_head(r, self.tx_head);
        if self.c2s.flags(r) & RING_FLAG_MASK_INT == 0 {
            let _ = nix::unistd::write(&self.c2s_irq, &1u64.to_ne_bytes());
        }
    }

    /// Descriptors the server published on S2C and we have not consumed; Err on a server tail
    /// beyond the buffers we gave.
    #[inline]
    fn rx_avail(&mut self, r: &MmapRegion) -> Result<u16, &'static str> {
        let tail = self.s2c.load_tail(r);
        let avail = tail.wrapping_sub(self.rx_cursor);
        if avail > self.rx_head.wrapping_sub(self.rx_cursor) {
            return Err("S2C tail beyond the buffers we gave");
        }
        Ok(avail)
    }

    /// Takes the next published S2C descriptor: (our offset, server's length, flags).
    #[inline]
    fn rx_take(&mut self, r: &MmapRegion) -> (u32, u32, u16) {
        let d = self.s2c.read_desc(r, self.rx_cursor);
        let off = self.rx_bufs[usize::from(self.rx_cursor & self.mask)];
        self.rx_cursor = self.rx_cursor.wrapping_add(1);
        (off, d.length, d.flags & DESC_FLAG_NEXT)
    }

    /// Hands free buffers from the pool to the server on S2C, up to a full ring.
    #[inline]
    fn refill(&mut self, r: &MmapRegion, pool: &mut Vec<u32>, bsize: u32) {
        let want = self
            .rx_cursor
            .wrapping_add(self.size)
            .wrapping_sub(self.rx_head);
        let n = usize::from(want).min(pool.len());
        if n == 0 {
            return;
        }
        if let Some(d) = self.s2c.descs(r) {
            // n <= want, a u16.
            d.prefetch(self.rx_head, n as u16, true);
        }
        for _ in 0..n {
            let Some(off) = pool.pop() else { break };
            let d = Desc {
                flags: 0,
                region: 0,
                length: bsize,
                offset: off,
                metadata: 0,
            };
            self.s2c.write_desc(r, self.rx_head, &d);
            self.rx_bufs[usize::from(self.rx_head & self.mask)] = off;
            self.rx_head = self.rx_head.wrapping_add(1);
        }
        self.s2c.store_head(r, self.rx_head);
    }
}

/// Links sharing one region and one buffer pool.
pub struct Endpoint {
    region: MmapRegion,
    pool: Vec<u32>,
    bsize: u32,
    pub links: Vec<Link>,
    pub backing: &'static str,
}

/// Two distinct links, mutably.
fn pair_mut(links: &mut [Link], a: usize, b: usize) -> Option<(&mut Link, &mut Link)> {
    if a == b || a >= links.len() || b >= links.len() {
        return None;
    }
    Some(if a < b {
        let (x, y) = links.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = links.split_at_mut(a);
        (&mut y[0], &mut x[b])
    })
}

impl Endpoint {
    /// Allocates the shared region and brings every link up (in order; each waits up to
    /// `opts.timeout` for its server). `sockets[i]` uses interface id `ids[i]`; every link gets
    /// `opts.queues` queue pairs.
    pub fn connect(
        sockets: &[String],
        ids: &[u32],
        opts: &EndpointOpts,
    ) -> Result<Endpoint, BenchError> {
        if sockets.is_empty() || sockets.len() != ids.len() {
            return Err(BenchError::Usage("need one interface id per socket".into()));
        }
        let nq = usize::from(opts.queues.max(1));
        let nrings = 2 * sockets.len() * nq;
        let size = 1usize << opts.log2_ring;
        let ring_sz = ring_bytes(opts.log2_ring).next_multiple_of(64);
        let buf_base = (nrings * ring_sz).next_multiple_of(4096);
        let nbufs = nrings * size;
        let stride = buffer_stride(opts.buffer_size) as usize;
        let total = buf_base + nbufs * stride;
        if total > u32::MAX as usize {
            return Err(BenchError::Usage(format!(
                "{nrings} rings x {size} slots x {stride} bytes (buffer size {} padded to an odd \
                 number of cache lines) exceed the 4 GiB memif offsets allow",
                opts.buffer_size
            )));
        }
        let (region, backing) = MmapRegion::alloc(total, "uswitch-bench").map_err(|e| {
            BenchError::Setup(format!(
                "cannot allocate {total} bytes of shared memory: {e}"
            ))
        })?;
        let pool: Vec<u32> = (0..nbufs)
            .rev()
            .map(|i| (buf_base + i * stride) as u32)
            .collect();
        let mut links = Vec::with_capacity(sockets.len());
        for (i, (sock_path, &id)) in sockets.iter().zip(ids).enumerate() {
            let mut places = Vec::with_capacity(nq);
            let mut rings = Vec::with_capacity(nq);
            for j in 0..nq {
                let k = 2 * (i * nq + j);
                let place = RingPlace {
                    c2s_off: (k * ring_sz) as u32,
                    s2c_off: ((k + 1) * ring_sz) as u32,
                    log2: opts.log2_ring,
                };
                let ring = |off: u32| {
                    Ring::new(0, &region, off as usize, opts.log2_ring).ok_or_else(|| {
                        BenchError::Setup("internal: ring does not fit the region".into())
                    })
                };
                let (c2s, s2c) = (ring(place.c2s_off)?, ring(place.s2c_off)?);
                c2s.init_header(&region, 0);
                // We poll S2C: the server need not signal us.
                s2c.init_header(&region, RING_FLAG_MASK_INT);
                places.push(place);
                rings.push((c2s, s2c));
            }
            let hs = handshake::connect(
                sock_path,
                id,
                opts.secret.as_deref(),
                &region,
                &places,
                opts.timeout,
            )?;
            let qs = rings
                .into_iter()
                .zip(hs.irqs)
                .map(|((c2s, s2c), (c2s_irq, s2c_irq))| Queue {
                    c2s_irq,
                    _s2c_irq: s2c_irq,
                    c2s,
                    s2c,
                    mask: (size - 1) as u16,
                    size: size as u16,
                    tx_head: 0,
                    tx_done: 0,
                    rx_cursor: 0,
                    rx_head: 0,
                    tx_bufs: vec![0; size],
                    rx_bufs: vec![0; size],
                })
                .collect();
            links.push(Link {
                socket: sock_path.clone(),
                peer_name: hs.peer_name,
                sock: hs.sock,
                qs,
                down: None,
                st: LinkStats::default(),
            });
        }
        let mut ep = Endpoint {
            region,
            pool,
            bsize: opts.buffer_size,
            links,
            backing: backing.as_str(),
        };
        for l in &mut ep.links {
            for q in &mut l.qs {
                q.refill(&ep.region, &mut ep.pool, ep.bsize);
            }
        }
        Ok(ep)
    }

    /// Reads pending control messages of every link without blocking; a DISCONNECT or a closed
    /// socket marks the link down. Call every few milliseconds, not per packet.
    pub fn poll_control(&mut self) {
        for l in &mut self.links {
            if !l.is_up() {
                continue;
            }
            while let Some(inc) = socket::recv(&l.sock) {
                match inc {
                    Incoming::Msg(Msg::Disconnect(d), _) => {
                        l.down = Some(format!(
                            "server disconnected: {}",
                            d.reason.to_string_lossy()
                        ));
                    }
                    Incoming::Msg(m, _) => {
                        l.down = Some(format!("unexpected {} from the server", m.kind()));
                    }
                    Incoming::Bad(why) => l.down = Some(format!("bad control message: {why}")),
                    Incoming::Closed(why) => l.down = Some(why),
                }
                if l.down.is_some() {
                    break;
                }
            }
        }
    }

    /// Transmits up to `max` packets on queue `qi` of link `li`; `fill(i, buf)` writes packet
    /// `i` of this burst into `buf` (one buffer) and returns its length (0 = stop). Returns
    /// packets sent.
    #[inline]
    pub fn tx(
        &mut self,
        li: usize,
        qi: usize,
        max: usize,
        mut fill: impl FnMut(usize, &SegMut) -> u32,
    ) -> usize {
        let Some(l) = self.links.get_mut(li).filter(|l| l.is_up()) else {
            return 0;
        };
        let Some(q) = l.qs.get_mut(qi) else { return 0 };
        if let Err(e) = q.reclaim(&self.region, &mut self.pool) {
            l.violation(e);
            return 0;
        }
        let n = max.min(usize::from(q.tx_room()));
        let mut sent = 0;
        while sent < n {
            let Some(off) = self.pool.pop() else { break };
            let Some(seg) = self.region.seg_mut(off as usize, self.bsize as usize) else {
                self.pool.push(off);
                break;
            };
            let len = fill(sent, &seg).min(self.bsize);
            if len == 0 {
                self.pool.push(off);
                break;
            }
            q.post_tx(&self.region, off, len, 0);
            l.st.tx_packets += 1;
            l.st.tx_bytes += u64::from(len);
            sent += 1;
        }
        if sent > 0 {
            q.publish_tx(&self.region);
        }
        sent
    }

    /// Receives up to `max` packets on queue `qi` of link `li`, calling `seen(first_segment)`
    /// for each, then refills the S2C ring. Returns packets received.
    #[inline]
    pub fn rx(&mut self, li: usize, qi: usize, max: usize, mut seen: impl FnMut(&Seg)) -> usize {
        let Some(l) = self.links.get_mut(li).filter(|l| l.is_up()) else {
            return 0;
        };
        let Some(q) = l.qs.get_mut(qi) else { return 0 };
        let avail = match q.rx_avail(&self.region) {
            Ok(a) => usize::from(a),
            Err(e) => {
                l.violation(e);
                return 0;
            }
        };
        let mut got = 0;
        let mut first = true;
        for _ in 0..avail {
            let (off, len, next) = q.rx_take(&self.region);
            if len == 0 || len > self.bsize {
                l.st.bad_desc += 1;
            } else if let Some(seg) = self.region.seg(off as usize, len as usize) {
                if first {
                    seen(&seg);
                }
                l.st.rx_bytes += u64::from(len);
            }
            self.pool.push(off);
            first = next == 0;
            if first {
                l.st.rx_packets += 1;
                got += 1;
                if got == max {
                    break;
                }
            }
        }
        q.refill(&self.region, &mut self.pool, self.bsize);
        got
    }

    /// Zero-copy forward of up to `max` descriptors from queue `qi` of link `a`'s S2C ring to
    /// the same queue of link `b`'s C2S ring (buffers move, bytes do not). Returns descriptors
    /// forwarded. When `b` is full or down the rest stay on `a`'s ring (backpressure: the
    /// server drops).
    #[inline]
    pub fn forward(&mut self, a: usize, b: usize, qi: usize, max: usize) -> usize {
        let Some((la, lb)) = pair_mut(&mut self.links, a, b) else {
            return 0;
        };
        if !la.is_up() {
            return 0;
        }
        let r = &self.region;
        let (Some(qa), Some(qb)) = (la.qs.get_mut(qi), lb.qs.get_mut(qi)) else {
            return 0;
        };
        let mut room = 0;
        if lb.down.is_none() {
            match qb.reclaim(r, &mut self.pool) {
                Ok(()) => room = usize::from(qb.tx_room()),
                Err(e) => violation(&mut lb.down, e),
            }
        }
        let avail = match qa.rx_avail(r) {
            Ok(n) => usize::from(n),
            Err(e) => {
                violation(&mut la.down, e);
                return 0;
            }
        };
        let n = avail.min(room).min(max);
        // n <= avail, a u16.
        qa.prefetch_rx(r, n as u16);
        qb.prefetch_tx(r, n as u16);
        let mut moved = 0;
        for _ in 0..n {
            let (off, len, next) = qa.rx_take(r);
            if len == 0 || len > self.bsize {
                la.st.bad_desc += 1;
                self.pool.push(off);
                continue;
            }
            la.st.rx_bytes += u64::from(len);
            lb.st.tx_bytes += u64::from(len);
            if next == 0 {
                la.st.rx_packets += 1;
                lb.st.tx_packets += 1;
            }
            qb.post_tx(r, off, len, next);
            moved += 1;
        }
        if moved > 0 {
            qb.publish_tx(r);
        }
        if n > 0 {
            qa.refill(r, &mut self.pool, self.bsize);
        }
        moved
    }

    /// Reclaims finished C2S buffers of every link (so `tx_in_flight` is current).
    pub fn reclaim_all(&mut self) {
        for l in &mut self.links {
            if !l.is_up() {
                continue;
            }
            for qi in 0..l.qs.len() {
                if let Err(e) = l.qs[qi].reclaim(&self.region, &mut self.pool) {
                    l.violation(e);
                }
            }
        }
    }

    /// Queue pairs per link.
    pub fn queues(&self) -> usize {
        self.links.first().map_or(0, |l| l.qs.len())
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        for l in &self.links {
            if l.is_up() {
                let _ = socket::send(&l.sock, &Msg::disconnect(0, "uswitch-bench done"), None);
            }
        }
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
