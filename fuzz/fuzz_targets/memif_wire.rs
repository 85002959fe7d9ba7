//! Fuzz target: `wire::parse` on arbitrary bytes must never panic, and whatever it accepts must
//! survive emit → parse unchanged (and emit must be stable).
#![no_main]
use libfuzzer_sys::fuzz_target;
use uswitch::memif::wire::{emit, parse, Desc, DESC_SIZE};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = parse(data) {
        let frame = emit(&msg);
        let again = parse(&frame).expect("emitted frame parses");
        assert_eq!(again, msg);
        assert_eq!(emit(&again), frame);
    }
    // Descriptors: any 16 bytes decode, and re-encode to the same bytes.
    if data.len() >= DESC_SIZE {
        let mut b = [0u8; DESC_SIZE];
        b.copy_from_slice(&data[..DESC_SIZE]);
        assert_eq!(Desc::from_bytes(&b).to_bytes(), b);
    }
});
