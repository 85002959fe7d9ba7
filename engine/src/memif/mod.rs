//! memif (shared memory packet interface) v2.0: wire format, rings, and the memif port.
