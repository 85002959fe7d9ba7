#!/usr/bin/env bash
# Demo: uswitchd with one bridge and two memif server ports; testpmd #1 (memif client) sends
# paced traffic, testpmd #2 (memif client) receives it; then shows uswitchctl show / stats /
# fdb and testpmd's counters. Everything started here is stopped by PID on exit.
# Run as root from the repository: ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

DEMO=${DEMO_DIR:-/run/uswitch-demo}
CTL="$DEMO/uswitchd.sock"
STATE="$DEMO/state.json"
DURATION=${DURATION:-5}
BIN=${CARGO_TARGET_DIR:-target}/release
pids=()

cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -f /dev/hugepages/uswdemo* 2>/dev/null
  rm -rf "$DEMO"
}
trap cleanup EXIT INT TERM

echo "==> dependencies (idempotent)"
[ "${SKIP_DEPS:-0}" = 1 ] || ./scripts/install-deps.sh
echo "==> building release binaries"
cargo build --release --bins -q
./scripts/hugepages.sh
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd missing: run scripts/install-deps.sh" >&2; exit 1; }

rm -rf "$DEMO"; mkdir -p "$DEMO"
ctl() { "$BIN/uswitchctl" --control "$CTL" "$@"; }

echo "==> starting uswitchd (core 0)"
"$BIN/uswitchd" --core 0 --state "$STATE" --control "$CTL" --log-level info >"$DEMO/uswitchd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do ctl show >/dev/null 2>&1 && break; sleep 0.1; done
ctl show >/dev/null || { cat "$DEMO/uswitchd.log"; echo "uswitchd did not start" >&2; exit 1; }

echo "==> bridge br0, ports tx0 and rx0 (memif servers)"
ctl bridge add br0
ctl port add tx0 memif --socket "$DEMO/tx0.sock" --role server --bridge br0
ctl port add rx0 memif --socket "$DEMO/rx0.sock" --role server --bridge br0

nohuge=()
free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
[ "${free:-0}" -ge 300 ] || nohuge=(--no-huge)
testpmd() { # name socket mac fwd-mode extra...
  local name=$1 sock=$2 mac=$3 mode=$4; shift 4
  mkfifo "$DEMO/$name.in"
  stdbuf -oL dpdk-testpmd --lcores 0@1,1@1 --no-pci --in-memory --file-prefix "uswdemo-$name" -m 256 "${nohuge[@]}" \
    --vdev "net_memif0,role=client,socket=$sock,socket-abstract=no,mac=$mac" \
    -- -i --forward-mode="$mode" --total-num-mbufs=8192 --no-flush-rx "$@" \
    <"$DEMO/$name.in" >"$DEMO/$name.log" 2>&1 &
  pids+=($!)
  exec {fd}>"$DEMO/$name.in"   # keep stdin open
  eval "fd_$name=$fd"
}
send() { local fd_var="fd_$1"; echo "$2" >&"${!fd_var}"; }

echo "==> testpmd rx (rxonly) on rx0, testpmd tx on tx0"
testpmd rx "$DEMO/rx0.sock" 02:00:00:00:00:02 rxonly
testpmd tx "$DEMO/tx0.sock" 02:00:00:00:00:01 rxonly --eth-peer=0,02:00:00:00:00:02
for _ in $(seq 100); do
  ctl stats --json 2>/dev/null | grep -o '"link_up": *true' | wc -l | grep -q 2 && break; sleep 0.1
done
send rx start; sleep 1   # the receiver must poll once before its ring has buffers
echo "==> sending for ${DURATION}s: 'start tx_first 16' (512 packets) every 200 ms"
end=$((SECONDS + DURATION))
while [ $SECONDS -lt $end ]; do
  send tx stop; send tx "start tx_first 16"; sleep 0.2
done
send tx stop; sleep 1
send tx "show port stats 0"; send rx "show port stats 0"; sleep 1

echo; echo "==> uswitchctl show"; ctl show
echo; echo "==> uswitchctl stats"; ctl stats
echo; echo "==> uswitchctl fdb show br0"; ctl fdb show br0
echo; echo "==> testpmd tx (on tx0):"; grep -E "TX-packets|RX-packets" "$DEMO/tx.log" | tail -2
echo "==> testpmd rx (on rx0):"; grep -E "RX-packets|TX-packets" "$DEMO/rx.log" | tail -2
send tx quit; send rx quit; sleep 1
echo; echo "==> demo done; stopping everything"
