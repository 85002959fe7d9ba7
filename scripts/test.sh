#!/usr/bin/env bash
# THE test command (README, CI): dependencies, hugepages, format, lint, release build, unit
# tests, then the end-to-end tests against real DPDK testpmd peers, serialized.
# Runs as root on Debian 12. Exits non-zero on the first failing step; prints every
# `test result:` line at the end. Last, the DPDK build (cargo feature `dpdk`, engine and tests
# only) is linted, built and its e2e test (tests/tests/dpdk_tap.rs) run.
#   SKIP_DEPS=1      do not run scripts/install-deps.sh
#   E2E_FILTER=name  only e2e tests whose name contains this
#   SKIP_FMT=1       skip the rustfmt check (local runs only; CI never sets it)
#   SKIP_DPDK=1      skip the `--features dpdk` steps (local runs only; CI never sets it)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
log=$(mktemp /tmp/uswitch-test.XXXXXX.log)
trap 'rm -f "$log"' EXIT

step() { printf '\n==> %s\n' "$*"; }
summary() {
  printf '\n==> summary\n'
  grep -E '^ *Running |^test result:|^error: test failed' "$log" || true
}

step "dependencies"
if [ "${SKIP_DEPS:-0}" != 1 ]; then
  ./scripts/install-deps.sh
fi

step "hugepages"
./scripts/hugepages.sh
# Stale DPDK files of OUR prefixes only (harness: uswe2e*, demo: uswdemo*).
rm -f /dev/hugepages/uswe2e* /dev/hugepages/uswdemo* 2>/dev/null || true
rm -rf /var/run/dpdk/uswe2e* /var/run/dpdk/uswdemo* 2>/dev/null || true

step "cargo fmt --check"
if [ "${SKIP_FMT:-0}" != 1 ]; then
  cargo fmt --all -- --check
else
  echo "skipped (SKIP_FMT=1)"
fi

step "benchmark helpers: python3 benches/lib/placement.py (self-test of the core placement labels)"
python3 benches/lib/placement.py

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --release"
cargo build --workspace --release --bins

# uswitch-bench's tests drive real traffic through uswitchd (its generator must be optimized):
# they run with the e2e tests, in release.
step "unit tests: cargo test --workspace --exclude uswitch-e2e --exclude uswitch-bench --no-fail-fast"
set +e
cargo test --workspace --exclude uswitch-e2e --exclude uswitch-bench --no-fail-fast 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then summary; echo "FAILED: unit tests (exit $rc)"; exit "$rc"; fi

step "end-to-end tests: cargo test -p uswitch-e2e -p uswitch-bench --release --no-fail-fast -- --test-threads=1"
set +e
timeout --kill-after=30 "${E2E_TIMEOUT:-2700}" \
  cargo test -p uswitch-e2e -p uswitch-bench --release --no-fail-fast -- --test-threads=1 ${E2E_FILTER:+"$E2E_FILTER"} 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
set -e
rm -f /dev/hugepages/uswe2e* 2>/dev/null || true
summary
if [ "$rc" != 0 ]; then
  echo "FAILED: end-to-end tests (exit $rc); process logs in ${CARGO_TARGET_DIR:-$root/target}/e2e-logs/"
  exit "$rc"
fi
# The loopback benchmark in its short mode (2 s per case), so the script cannot rot. Numbers
# from it are not checked here (benchmarks, not timed tests); the table must come out whole.
if [ "${SKIP_LOOPBACK:-0}" != 1 ]; then
  step "benchmark smoke: benches/loopback.sh --short"
  lb_out=$(mktemp /tmp/uswitch-loopback.XXXXXX.md)
  if ! bash benches/loopback.sh --short --out "$lb_out"; then
    echo "FAILED: benches/loopback.sh --short"; exit 1
  fi
  grep -q '^| uswitch-bridge ' "$lb_out" && grep -q '^| uswitch-xconnect ' "$lb_out" \
    || { echo "FAILED: loopback table lacks uswitch rows"; cat "$lb_out"; exit 1; }
  grep -Eq '^\| uswitch-(bridge|xconnect) \| vhost-user \| [0-9]+ \| [0-9]' "$lb_out" \
    || { echo "FAILED: loopback table lacks measured uswitch vhost-user rows"; cat "$lb_out"; exit 1; }
  grep -Eq '^\| uswitch-bridge \| bench \| 2 \| 32 \| .*cores (near|far|mixed) \(c2c [0-9]+-[0-9]+ ns\)' "$lb_out" \
    || { echo "FAILED: loopback table lacks the core placement probe (uswitch-c2c)"; cat "$lb_out"; exit 1; }
  rm -f "$lb_out"
  # The kernel-port benchmark (issue 8) in its short mode (3 s per case, ≈ 40 s).
  step "benchmark smoke: benches/kernel-port.sh --short"
  kp_out=$(mktemp /tmp/uswitch-kernel-port.XXXXXX.md)
  if ! bash benches/kernel-port.sh --short --out "$kp_out"; then
    echo "FAILED: benches/kernel-port.sh --short"; exit 1
  fi
  grep -Eq '^\| udp-small \| [0-9.]+ Mpps' "$kp_out" \
    || { echo "FAILED: kernel-port table lacks a measured uswitch udp-small rate"; cat "$kp_out"; exit 1; }
  rm -f "$kp_out"
fi

# DPDK ports (cargo feature `dpdk`, off by default): only the engine and the tests crate are
# built with it (not a second release build of the workspace). The uswitchd/uswitchctl in
# target/release are replaced by the DPDK-enabled ones (a superset).
if [ "${SKIP_DPDK:-0}" != 1 ]; then
  step "cargo clippy --features dpdk (engine, tests) -- -D warnings"
  cargo clippy -p uswitch-engine -p uswitch-e2e --all-targets --features uswitch-e2e/dpdk -- -D warnings

  step "cargo build --release -p uswitch-engine --features dpdk --bins"
  cargo build --release -p uswitch-engine --features dpdk --bins

  step "unit tests with dpdk: cargo test -p uswitch-engine --release --features dpdk --lib"
  set +e
  cargo test -p uswitch-engine --release --features dpdk --lib 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" != 0 ]; then summary; echo "FAILED: dpdk unit tests (exit $rc)"; exit "$rc"; fi

  step "dpdk end-to-end: cargo test -p uswitch-e2e --release --features dpdk --test dpdk_tap -- --test-threads=1"
  set +e
  timeout --kill-after=30 600 \
    cargo test -p uswitch-e2e --release --features dpdk --test dpdk_tap -- --test-threads=1 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  set -e
  summary
  if [ "$rc" != 0 ]; then echo "FAILED: dpdk end-to-end test (exit $rc)"; exit "$rc"; fi

  # The DPDK uplink benchmark in its short mode without the kernel-port mode (≈ 30 s), so the
  # script cannot rot; its numbers are not checked, only that the DPDK row was measured.
  step "benchmark smoke: benches/dpdk-uplink.sh --short --no-kernel"
  du_out=$(mktemp /tmp/uswitch-dpdk-uplink.XXXXXX.md)
  if ! bash benches/dpdk-uplink.sh --short --no-kernel --out "$du_out"; then
    echo "FAILED: benches/dpdk-uplink.sh --short"; exit 1
  fi
  grep -Eq '^\| udp-small \| ([1-9][0-9]*\.[0-9]+|0\.[0-9]*[1-9][0-9]*) Mpps' "$du_out" \
    || { echo "FAILED: dpdk-uplink table lacks a measured DPDK udp-small rate"; cat "$du_out"; exit 1; }
  rm -f "$du_out"
fi
echo "OK: all tests passed"
