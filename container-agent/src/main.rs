//! uswitch-agent: pod-side peer of a uswitch port (tap, passthrough, probe modes).
//! Not implemented yet (issue 6); this binary says so and exits non-zero.
fn main() {
    eprintln!("uswitch-agent: not implemented yet (tap/passthrough/probe modes are planned)");
    std::process::exit(2);
}
