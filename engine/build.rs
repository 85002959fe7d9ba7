//! Build script: only with the cargo feature `dpdk`, finds the system DPDK through
//! `pkg-config libdpdk` (at least 20.11; 22.11 tested), links it, and compiles the C shim
//! `src/dpdk/shim.c` (wrappers around DPDK's inline functions) against its headers.
//! Without the feature it does nothing, so the default build needs no DPDK.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::process::Command;

    /// Oldest DPDK whose API the shim uses unchanged (`RTE_ETH_*` names, `rte_dev_probe`,
    /// `rte_thread_register`, `rte_pktmbuf_free_bulk`).
    const MIN_VERSION: &str = "21.11";

    pub fn build() {
        println!("cargo:rerun-if-changed=src/dpdk/shim.c");
        let lib = match pkg_config::Config::new()
            .atleast_version(MIN_VERSION)
            .probe("libdpdk")
        {
            Ok(l) => l,
            Err(e) => panic!(
                "feature `dpdk`: libdpdk >= {MIN_VERSION} not found by pkg-config \
                 (Debian/Ubuntu: apt-get install dpdk-dev; or set PKG_CONFIG_PATH): {e}"
            ),
        };
        // The pkg-config crate exposes include paths and defines only; the shim also needs
        // `-include rte_config.h` and the machine flags DPDK was built with.
        let out = Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("running pkg-config --cflags libdpdk");
        assert!(out.status.success(), "pkg-config --cflags libdpdk failed");
        let cflags = String::from_utf8(out.stdout).expect("pkg-config output is UTF-8");
        let mut cc = cc::Build::new();
        cc.file("src/dpdk/shim.c").warnings(true).opt_level(2);
        for f in cflags.split_whitespace() {
            cc.flag(f);
        }
        cc.compile("uswitch_dpdk_shim");
        println!("cargo:rustc-env=USWITCH_DPDK_VERSION={}", lib.version);
    }
}
