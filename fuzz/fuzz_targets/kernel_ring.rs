//! Fuzz target: the kernel port's TPACKET_V3 receive ring over arbitrary block contents. The
//! input is written over the first block(s) of a ring whose block status words say "user";
//! `RxRing::burst` must never panic or return a frame outside the mapping, and every block
//! must be handed back (nothing held) once bursts return nothing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use uswitch::kernel::ring::{Geometry, RingMap, RxRing};
use uswitch::port::{PktRef, QueueStats};

const BS: usize = 16384;
const NB: usize = 2;

fuzz_target!(|data: &[u8]| {
    let g = Geometry {
        rx_block_size: BS,
        rx_blocks: NB,
        tx_frame_size: 2048,
        tx_frames: 8,
        tx_block_size: BS,
    };
    let map = RingMap::anonymous(g.rx_bytes() + g.tx_bytes()).expect("anonymous map");
    let n = data.len().min(g.rx_bytes());
    assert!(map.write(0, &data[..n]));
    for b in 0..NB {
        // block_status lives at offset 8 of each block.
        let st = map.load_status(b * BS + 8).unwrap_or(0);
        map.store_status(b * BS + 8, st | libc_user());
    }
    let mut rx = RxRing::new(&g);
    let mut out = [PktRef::default(); 16];
    let mut st = QueueStats::default();
    for _ in 0..64 {
        let k = rx.burst(&map, &mut out, &mut st);
        for p in &out[..k] {
            assert!(p.len() <= g.max_frame());
            let mut buf = vec![0u8; p.len() as usize];
            assert_eq!(p.read_head(&mut buf), buf.len());
        }
        if k == 0 {
            break;
        }
        rx.release(&map);
    }
    assert_eq!(rx.held(), 0);
});

/// TP_STATUS_USER.
fn libc_user() -> u32 {
    1
}
