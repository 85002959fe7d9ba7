//! Probe mode: a smoltcp IPv4 stack on the memif port, no kernel interface, no DPDK. It answers
//! ARP and ICMP echo on the configured addresses (a health check uswitch can be pinged through)
//! and with `--ping ADDR` sends echo requests and reports RTTs and loss, like `ping`.
//!
//! Rules:
//! - One frame per `receive`: copied out of the memif buffer into our staging buffer, the slot
//!   released at once (smoltcp keeps nothing that points into shared memory).
//! - Transmit copies smoltcp's frame into a heap buffer and hands it to `tx_burst`; while the
//!   link is down `transmit` returns None, so smoltcp keeps its packets queued.
//! - IPv4 only (addresses of other families are skipped with a warning).
//! - Exit status of a ping run: 0 when at least one reply came, [`AgentError::NoReply`] else.
use crate::error::{AgentError, Result};
use crate::link::{self, LinkWatch};
use crate::podconf::{fmt_mac, PodConfig};
use crate::signals::{Event, Signals};
use smoltcp::iface::{Config, Interface, Route, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::icmp;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr,
};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use uswitch::memif::MemifPort;
use uswitch::port::{PktRef, Port, TxItem};
use uswitch::shm::HeapBuf;

pub struct ProbeOptions {
    pub ping: Option<Ipv4Addr>,
    pub count: u32,
    pub interval: Duration,
    /// How long to wait for the last replies after the last request.
    pub timeout: Duration,
    /// How long to wait for the memif link to come up before pinging.
    pub wait_link: Duration,
    pub wait_socket: Duration,
    pub payload: usize,
}

/// smoltcp device over a memif port.
pub struct MemifDevice<P: Port> {
    pub port: P,
    rx_buf: Vec<u8>,
    rx_pkts: [PktRef; 1],
    tx_buf: HeapBuf,
    tx_pkts: [PktRef; 1],
    mtu: usize,
    /// Frames received / sent (activity detection and the final log line).
    pub rx_frames: u64,
    pub tx_frames: u64,
}

impl<P: Port> MemifDevice<P> {
    pub fn new(port: P, ip_mtu: u16) -> Self {
        let mtu = usize::from(ip_mtu) + 14;
        MemifDevice {
            port,
            rx_buf: vec![0; mtu + 4],
            rx_pkts: [PktRef::default()],
            tx_buf: HeapBuf::new(mtu),
            tx_pkts: [PktRef::default()],
            mtu,
            rx_frames: 0,
            tx_frames: 0,
        }
    }
}

pub struct MemifRx<'a> {
    buf: &'a [u8],
}

pub struct MemifTx<'a, P: Port> {
    port: &'a mut P,
    buf: &'a mut HeapBuf,
    pkts: &'a mut [PktRef; 1],
    count: &'a mut u64,
}

impl RxToken for MemifRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.buf)
    }
}

impl<P: Port> TxToken for MemifTx<'_, P> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.buf.len());
        let r = f(&mut self.buf.bytes_mut()[..len]);
        if let Some(seg) = self.buf.seg(0, len) {
            let p = &mut self.pkts[0];
            p.clear();
            p.push_seg(seg);
            *self.count += self.port.tx_burst(0, &self.pkts[..], &[TxItem::default()]) as u64;
        }
        r
    }
}

impl<P: Port> Device for MemifDevice<P> {
    type RxToken<'a>
        = MemifRx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = MemifTx<'a, P>
    where
        Self: 'a;

    fn receive(
        &mut self,
        _t: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.port.rx_queues() == 0 {
            return None;
        }
        let mut got = None;
        for q in 0..self.port.rx_queues() {
            if self.port.rx_burst(q, &mut self.rx_pkts) == 1 {
                let p = &self.rx_pkts[0];
                let len = p.len() as usize;
                if len <= self.rx_buf.len() {
                    got = Some(p.read_head(&mut self.rx_buf[..len]));
                }
                self.port.rx_release(q);
                if got.is_some() {
                    break;
                }
            }
        }
        let n = got?;
        self.rx_frames += 1;
        Some((
            MemifRx {
                buf: &self.rx_buf[..n],
            },
            MemifTx {
                port: &mut self.port,
                buf: &mut self.tx_buf,
                pkts: &mut self.tx_pkts,
                count: &mut self.tx_frames,
            },
        ))
    }

    fn transmit(&mut self, _t: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        if !self.port.link_up() {
            return None;
        }
        Some(MemifTx {
            port: &mut self.port,
            buf: &mut self.tx_buf,
            pkts: &mut self.tx_pkts,
            count: &mut self.tx_frames,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = self.mtu;
        c.max_burst_size = Some(1);
        c
    }
}

fn smol_now(t0: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(t0.elapsed().as_micros() as i64)
}

/// Builds the interface with the configured IPv4 addresses and routes.
pub fn interface<P: Port>(c: &PodConfig, dev: &mut MemifDevice<P>, t0: Instant) -> Interface {
    let mac = c.mac_or_derived();
    let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    cfg.random_seed = u64::from(std::process::id()) ^ t0.elapsed().as_nanos() as u64;
    let mut iface = Interface::new(cfg, dev, smol_now(t0));
    iface.update_ip_addrs(|addrs| {
        for a in &c.ips {
            match a.addr {
                IpAddr::V4(v4) => {
                    if addrs
                        .push(IpCidr::new(IpAddress::Ipv4(v4), a.prefix))
                        .is_err()
                    {
                        tracing::warn!(addr = %a, "too many addresses; skipped");
                    }
                }
                IpAddr::V6(_) => tracing::warn!(addr = %a, "probe mode is IPv4 only; skipped"),
            }
        }
    });
    for r in &c.routes {
        let (IpAddr::V4(dst), Some(IpAddr::V4(gw))) = (r.dst.addr, r.gw) else {
            continue;
        };
        let route = Route {
            cidr: IpCidr::new(IpAddress::Ipv4(dst), r.dst.prefix),
            via_router: IpAddress::Ipv4(gw),
            preferred_until: None,
            expires_at: None,
        };
        iface.routes_mut().update(|t| {
            if t.push(route).is_err() {
                tracing::warn!(route = %r, "route table full; skipped");
            }
        });
    }
    tracing::info!(mac = %fmt_mac(&mac), ips = ?c.ips.iter().map(|a| a.to_string()).collect::<Vec<_>>(), "probe interface ready");
    iface
}

/// Ping bookkeeping.
struct Pinger {
    target: Ipv4Addr,
    ident: u16,
    count: u32,
    sent: Vec<Option<Instant>>,
    rtts: Vec<Duration>,
    next_seq: u32,
    next_at: Instant,
    payload: Vec<u8>,
}

impl Pinger {
    fn send(&mut self, sock: &mut icmp::Socket<'_>, now: Instant, interval: Duration) {
        if self.next_seq >= self.count || now < self.next_at || !sock.can_send() {
            return;
        }
        let seq = self.next_seq as u16;
        let repr = Icmpv4Repr::EchoRequest {
            ident: self.ident,
            seq_no: seq,
            data: &self.payload,
        };
        match sock.send(repr.buffer_len(), IpAddress::Ipv4(self.target)) {
            Ok(buf) => {
                let mut pkt = Icmpv4Packet::new_unchecked(buf);
                repr.emit(&mut pkt, &ChecksumCapabilities::default());
                self.sent[self.next_seq as usize] = Some(now);
                self.next_seq += 1;
                self.next_at = now + interval;
            }
            Err(e) => tracing::warn!("cannot queue echo request: {e}"),
        }
    }

    fn recv(&mut self, sock: &mut icmp::Socket<'_>, now: Instant) {
        while sock.can_recv() {
            let Ok((data, from)) = sock.recv() else { break };
            let Ok(pkt) = Icmpv4Packet::new_checked(data) else {
                continue;
            };
            let Ok(Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            }) = Icmpv4Repr::parse(&pkt, &ChecksumCapabilities::default())
            else {
                continue;
            };
            if ident != self.ident {
                continue;
            }
            let Some(sent) = self
                .sent
                .get_mut(usize::from(seq_no))
                .and_then(Option::take)
            else {
                continue; // duplicate or unknown
            };
            let rtt = now.saturating_duration_since(sent);
            self.rtts.push(rtt);
            println!(
                "{} bytes from {from}: icmp_seq={seq_no} time={:.3} ms",
                data.len() + 8,
                rtt.as_secs_f64() * 1e3
            );
        }
    }

    fn done_sending(&self) -> bool {
        self.next_seq >= self.count
    }

    fn summary(&self) {
        let tx = self.next_seq;
        let rx = self.rtts.len() as u32;
        let loss = if tx == 0 {
            100.0
        } else {
            100.0 * f64::from(tx - rx) / f64::from(tx)
        };
        println!("--- {} ping statistics ---", self.target);
        println!("{tx} packets transmitted, {rx} received, {loss:.0}% packet loss");
        if rx > 0 {
            let ms = |d: &Duration| d.as_secs_f64() * 1e3;
            let min = self.rtts.iter().map(ms).fold(f64::MAX, f64::min);
            let max = self.rtts.iter().map(ms).fold(0.0, f64::max);
            let avg = self.rtts.iter().map(ms).sum::<f64>() / f64::from(rx);
            println!("rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms");
        }
    }
}

pub fn run(c: &PodConfig, o: &ProbeOptions, mut signals: Signals) -> Result<()> {
    link::wait_for_socket(c, o.wait_socket)?;
    let port: MemifPort = link::memif_port(c)?;
    let t0 = Instant::now();
    let mut dev = MemifDevice::new(port, c.mtu);
    let mut iface = interface(c, &mut dev, t0);
    let mut sockets = SocketSet::new(vec![]);
    let mut pinger = o.ping.map(|target| Pinger {
        target,
        ident: (std::process::id() & 0xffff) as u16,
        count: o.count,
        sent: vec![None; o.count as usize],
        rtts: Vec::new(),
        next_seq: 0,
        next_at: t0,
        payload: (0..o.payload).map(|i| i as u8).collect(),
    });
    let handle = pinger.as_ref().map(|p| {
        let rx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 32], vec![0; 32 * 1600]);
        let tx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 32], vec![0; 32 * 1600]);
        let mut s = icmp::Socket::new(rx, tx);
        // Binding a fresh socket to an ident cannot fail.
        let _ = s.bind(icmp::Endpoint::Ident(p.ident));
        sockets.add(s)
    });
    if let Some(p) = &pinger {
        println!(
            "PING {} from {}: {} data bytes",
            p.target, c.socket, o.payload
        );
    }

    let mut watch = LinkWatch::default();
    let mut next_ctl = t0;
    let mut last_active = t0;
    let mut last_sent_at: Option<Instant> = None;
    let res = loop {
        let now = Instant::now();
        if now >= next_ctl {
            next_ctl = now + Duration::from_millis(1);
            dev.port.poll_control(now);
            watch.update(&dev.port);
            match signals.poll() {
                Some(Event::Stop(s)) => {
                    tracing::info!(signal = %s, "stopping");
                    break Ok(());
                }
                Some(Event::DumpStats) => {
                    tracing::info!(rx = dev.rx_frames, tx = dev.tx_frames, "counters")
                }
                None => {}
            }
        }
        let before = (dev.rx_frames, dev.tx_frames);
        iface.poll(smol_now(t0), &mut dev, &mut sockets);
        if let (Some(p), Some(h)) = (pinger.as_mut(), handle) {
            let sock = sockets.get_mut::<icmp::Socket>(h);
            p.recv(sock, now);
            if dev.port.link_up() {
                p.send(sock, now, o.interval);
                if p.done_sending() && last_sent_at.is_none() {
                    last_sent_at = Some(now);
                }
            } else if now.duration_since(t0) > o.wait_link && p.next_seq == 0 {
                break Err(AgentError::Memif(format!(
                    "link to {} did not come up within {} ms",
                    c.socket,
                    o.wait_link.as_millis()
                )));
            }
            let all_back = p.rtts.len() as u32 == p.next_seq;
            if let Some(t) = last_sent_at {
                if all_back || now.duration_since(t) >= o.timeout {
                    break Ok(());
                }
            }
        }
        if (dev.rx_frames, dev.tx_frames) != before {
            last_active = now;
            continue;
        }
        let idle = now.saturating_duration_since(last_active);
        std::thread::sleep(if idle < Duration::from_millis(5) {
            Duration::from_micros(20)
        } else {
            Duration::from_millis(1)
        });
    };
    tracing::info!(rx = dev.rx_frames, tx = dev.tx_frames, "probe stopping");
    drop(dev); // DISCONNECT, close
    match (res, pinger) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(p)) => {
            p.summary();
            if p.rtts.is_empty() && p.next_seq > 0 {
                Err(AgentError::NoReply(p.target.to_string()))
            } else {
                Ok(())
            }
        }
        (Ok(()), None) => Ok(()),
    }
}
