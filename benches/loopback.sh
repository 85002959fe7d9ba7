#!/usr/bin/env bash
# The memif loopback benchmark of issue 9, in one run.
#
# Topology: the switch under test owns two memif SERVER ports (A, B) on core 0 — testpmd io-fwd,
# OVS-DPDK (NORMAL), uswitch bridge, uswitch xconnect — and a reflector on core 1 is the client
# of both and sends back everything it receives (testpmd io --tx-first, or the zero-copy
# `uswitch-bench reflect`). 64-byte frames; bursts 32 and 256 (the reflector's and the switch's:
# testpmd `--burst`, `uswitchd --burst`; OVS's PMD burst is fixed at 32); uswitch also with 16 ports
# (8 bridges / 8 xconnects of 2 ports each: a single 16-port bridge would flood every frame 15x,
# since reflected traffic never lets it learn the destination), and testpmd io-fwd with 16 ports
# (its paired port topology: 0<->1, 2<->3, ...) as the reference for how 16 ports scale.
# vhost-user (issue 7, cases '*/vhost/*'): the switch owns two vhost-user server sockets instead,
# the reflector is testpmd with two net_virtio_user ports; baseline: testpmd's net_vhost io-fwd.
#
# Per case: warm-up W s, then the switch's cycle counters are cleared (testpmd `clear fwd stats
# all` with --record-core-cycles, `uswitchctl stats --worker --clear`, OVS `pmd-stats-clear`) and
# the reflector's rx counters are taken over a window of D s. Printed: Mpps per direction (mean
# reflector rx pps per port), aggregate Mpps (sum over ports), switch busy cycles per packet,
# and ratios against testpmd io-fwd with the same reflector and burst.
#
# Usage: benches/loopback.sh [--short] [--warmup S] [--window S] [--cases REGEX] [--out FILE]
#   --short       2 s window, 1 s warm-up (CI).
#   --cases RE    run only cases whose name matches RE (e.g. 'uswitch-bridge', '/vhost/').
#   --out FILE    also write the Markdown table to FILE.
#   --perf FILE   also `perf record` the uswitch worker thread during the window of the
#                 uswitch-bridge / uswitch-bench reflector / burst 32 case; report to FILE.
#   --ring-log2 N the reflectors' memif rings: 2^N slots (testpmd `rsize=N`, uswitch-bench
#                 `--ring-size N`; default 10, both tools' default). Every buffer of a ring is
#                 used in turn, so 16 ports of 1024-slot rings cycle through 64 MiB of buffers.
#   --max-ring-log2 N  uswitch's server ports cap the client's rings at 2^N slots
#                 (`uswitchctl port add … --max-ring-size N`, sent in HELLO: testpmd takes
#                 the smaller size; uswitch-bench, which refuses to shrink silently, is given
#                 it). Applies to uswitch cases only: testpmd's and OVS's memif servers have
#                 no such setting. The header says so.
#   --perf-case RE  profile the uswitch memif case(s) matching RE instead, with either
#                 reflector (e.g. 'xconnect/bench/2p/b32', 'bridge/testpmd/16p/b32').
#   --inject N    the uswitch-bench reflector's packets injected per link at start (its
#                 `--inject`; default 512, its default). testpmd's `--tx-first` injects one
#                 burst per port.
#   --repeat N    run the memif and latency cases N times (rounds, in turn: every case once,
#                 then again) and print the median of each figure, with every run's aggregate
#                 Mpps and cycles/packet in the note. For noisy machines, where one run of a
#                 case moves by tens of percent. vhost-user cases run once.
# After the table: aggregate Mpps of 16 ports against 2 ports per switch, reflector and burst
# (per round, and their median with --repeat).
# Core placement: during every memif window `uswitch-c2c` times a cache line round trip between
# CPU 0 and CPU 1 once a second (SCHED_FIFO, under 1 ms each; latency cases: once in the
# warm-up and once after the run). A run is "near" when every sample is under the split of the
# whole benchmark run's samples (the middle of their largest jump, if it is 2x or more and each
# side holds max(2, 5 %) of the samples, else a fixed 150 ns: benches/lib/placement.py, which
# scripts/test.sh self-tests), "far" when none is, else "mixed" (in its note). With --repeat,
# the figures are also given over near runs only and over far runs only (a VM's host may move
# the vCPUs between cores sharing an L3 and cores that do not, and every switch's rate follows:
# compare switches within one placement). vhost-user cases are not probed.
# A case whose reflector received nothing in the window (a dead loop: every injected frame
# lost) is marked "DEAD" in its note, never reported as a figure. The table header names the
# machine (CPU model, TSC MHz, CPUs) and the load average before and after the run.
# Needs: release build (cargo build --release -p uswitch-engine -p uswitch-bench), dpdk-testpmd,
# hugepages; OVS-DPDK (openvswitch-switch-dpdk) is optional (skipped with a note).
# Everything it starts is killed by PID on exit; its hugepage files are removed.
set -u -o pipefail

WARMUP=2
WINDOW=8
CASES='.*'
OUT=''
PERF_OUT=''
PERF_CASE='^uswitch-bridge/bench/2p/b32$'
RING_LOG2=10
MAX_RING_LOG2=''
REPEAT=1
ROUND=1
INJECT=512
# int_arg OPTION VALUE MIN MAX: prints VALUE when it is an integer in MIN..MAX, else says so.
int_arg() {
    if [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge "$3" ] && [ "$2" -le "$4" ]; then
        echo "$2"
    else
        echo "loopback.sh: $1 must be $3..$4" >&2
        return 1
    fi
}
while [ $# -gt 0 ]; do
    case "$1" in
        --short) WARMUP=1; WINDOW=2 ;;
        --warmup) WARMUP=$2; shift ;;
        --window) WINDOW=$2; shift ;;
        --cases) CASES=$2; shift ;;
        --out) OUT=$2; shift ;;
        --perf) PERF_OUT=$2; shift ;;
        --perf-case) PERF_CASE=$2; shift ;;
        --ring-log2) RING_LOG2=$(int_arg --ring-log2 "$2" 4 14) || exit 2; shift ;;
        --max-ring-log2) MAX_RING_LOG2=$(int_arg --max-ring-log2 "$2" 4 14) || exit 2; shift ;;
        --repeat) REPEAT=$(int_arg --repeat "$2" 1 20) || exit 2; shift ;;
        --inject) INJECT=$(int_arg --inject "$2" 1 16384) || exit 2; shift ;;
        -h|--help) sed -n '2,59p' "$0"; exit 0 ;;
        *) echo "loopback.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${USWITCH_BIN:-$ROOT/target/release}
for b in uswitchd uswitchctl uswitch-bench uswitch-c2c; do
    if [ ! -x "$BIN/$b" ]; then
        echo "loopback.sh: $BIN/$b missing; run: cargo build --release -p uswitch-engine -p uswitch-bench" >&2
        exit 2
    fi
done
command -v dpdk-testpmd >/dev/null || { echo "loopback.sh: dpdk-testpmd not installed" >&2; exit 2; }
OVS_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
HAVE_OVS=0
if [ -x "$OVS_VSWITCHD" ] && command -v ovsdb-server >/dev/null && command -v ovs-vsctl >/dev/null; then
    HAVE_OVS=1
fi

# Hugepages (as the shared rules describe).
if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt 1024 ]; then echo 1024 > /proc/sys/vm/nr_hugepages; fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages

# Serialize with the e2e tests and other throughput runs (same lock file as tests/src/lib.rs).
exec 9> /tmp/uswitch-e2e.lock
if ! flock -w 1800 9; then echo "loopback.sh: /tmp/uswitch-e2e.lock busy for 30 min" >&2; exit 2; fi

WORK=$(mktemp -d /tmp/uswitch-loopback.XXXXXX)
PREFIX="uswlb$$"        # hugepage file prefix of every DPDK process we start
PIDS=()                 # processes of the current case
FDS=()                  # fifo fds of the current case
RESULTS=$WORK/results.tsv
: > "$RESULTS"

kill_case() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.3
    done
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for f in "${FDS[@]}"; do eval "exec $f>&-"; done
    PIDS=()
    FDS=()
    rm -f /dev/hugepages/${PREFIX}* 2>/dev/null
}

cleanup() {
    kill_case
    rm -f /dev/hugepages/${PREFIX}* 2>/dev/null
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- testpmd, interactive through a fifo -------------------------------------------------
# tp_start NAME LCORES VDEVS... -- TESTPMD_ARGS...   (sets TP_FD_<NAME>)
tp_start() {
    local name=$1 lcores=$2; shift 2
    local fifo=$WORK/$name.in
    rm -f "$fifo"; mkfifo "$fifo"
    local fd
    exec {fd}<>"$fifo"
    FDS+=("$fd")
    # stdbuf: testpmd printf output is block-buffered on a file otherwise (visible only at exit).
    stdbuf -oL dpdk-testpmd --lcores "$lcores" --no-pci --file-prefix "${PREFIX}$name" -m 256 "$@" \
        < "$fifo" > "$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "TP_FD_$name=$fd"
}
tp_cmd() { # NAME COMMAND...
    local fdvar="TP_FD_$1"; shift
    echo "$*" >&"${!fdvar}"
}
tp_lines() { wc -l < "$WORK/$1.log"; }
# tp_wait_prompt NAME: wait until testpmd prints its prompt (ports configured), up to 20 s.
tp_wait_prompt() {
    for _ in $(seq 1 200); do
        grep -q "testpmd>" "$WORK/$1.log" 2>/dev/null && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "loopback.sh: testpmd $1 did not start; log:" >&2; tail -20 "$WORK/$1.log" >&2
    return 1
}
# Sum / count of "RX-packets: N" in a testpmd "show port stats all" printed after line $2.
tp_rx_packets() { tail -n +"$2" "$WORK/$1.log" | grep -o 'RX-packets: *[0-9]*' | awk '{print $2}'; }
# "total cycles=C / total io packets=P" of the last `show fwd stats all` after line $2 -> "C P".
# (testpmd 22.11 counts only cycles of bursts that received packets; `clear fwd stats all` does
# not reset them, so the window figure is the difference of two snapshots.)
tp_cycles() {
    tail -n +"$2" "$WORK/$1.log" | grep -o 'total cycles=[0-9]* / total [a-z]* packets=[0-9]*' \
        | tail -1 | sed 's/total cycles=\([0-9]*\) .*packets=\([0-9]*\)/\1 \2/'
}
tp_snapshot() { # NAME -> "cycles packets" now
    local l; l=$(tp_lines "$1")
    tp_cmd "$1" show fwd stats all
    for _ in $(seq 1 20); do
        sleep 0.1
        local r; r=$(tp_cycles "$1" "$l")
        [ -n "$r" ] && { echo "$r"; return; }
    done
}

vdevs() { # ROLE N -> --vdev args for N memif ports on $WORK/p<i>.sock
    local role=$1 n=$2 i out=()
    for i in $(seq 0 $((n - 1))); do
        out+=(--vdev "net_memif$i,role=$role,socket=$WORK/p$i.sock,socket-abstract=no,id=0$3")
    done
    echo "${out[@]}"
}

# ---- switches -------------------------------------------------------------------------------
SWITCH_KIND=''
TP_SNAP=''
switch_start() { # KIND NPORTS BURST
    SWITCH_KIND=$1
    local n=$2 burst=$3 i
    rm -f "$WORK"/p*.sock
    case $1 in
        testpmd)
            # shellcheck disable=SC2046
            tp_start sw 0@0,1@0 $(vdevs server "$n" "") -- -i --forward-mode=io \
                --burst="$burst" --record-core-cycles || return 1
            tp_wait_prompt sw || return 1
            tp_cmd sw start
            ;;
        uswitch-bridge|uswitch-xconnect)
            "$BIN/uswitchd" --control "$WORK/ctl.sock" --no-state --core 0 --burst "$burst" --log-level warn \
                > "$WORK/uswitchd.log" 2>&1 &
            PIDS+=($!)
            for _ in $(seq 1 100); do [ -S "$WORK/ctl.sock" ] && break; sleep 0.1; done
            for i in $(seq 0 $((n - 1))); do
                local attach=()
                [ "$1" = uswitch-bridge ] && attach=(--bridge "br$((i / 2))")
                if [ "$1" = uswitch-bridge ] && [ $((i % 2)) = 0 ]; then
                    usctl bridge add "br$((i / 2))" || return 1
                fi
                [ -n "$MAX_RING_LOG2" ] && attach+=(--max-ring-size "$MAX_RING_LOG2")
                usctl port add "p$i" memif --socket "$WORK/p$i.sock" --role server "${attach[@]}" || return 1
            done
            if [ "$1" = uswitch-xconnect ]; then
                for i in $(seq 0 2 $((n - 1))); do usctl xconnect "p$i" "p$((i + 1))" || return 1; done
            fi
            ;;
        ovs)
            local d=$WORK/ovs
            rm -rf "$d"; mkdir -p "$d"
            export OVS_RUNDIR=$d OVS_LOGDIR=$d OVS_DBDIR=$d OVS_SYSCONFDIR=$d
            ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema || return 1
            ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --unixctl="$d/ovsdb.ctl" \
                --log-file="$d/ovsdb.log" > /dev/null 2>&1 &
            PIDS+=($!)
            for _ in $(seq 1 50); do [ -S "$d/db.sock" ] && break; sleep 0.1; done
            ovs-vsctl --db="unix:$d/db.sock" --no-wait init
            ovs-vsctl --db="unix:$d/db.sock" --no-wait set Open_vSwitch . \
                other_config:dpdk-init=true other_config:pmd-cpu-mask=0x1 \
                "other_config:dpdk-extra=--no-pci --file-prefix ${PREFIX}ovs"
            "$OVS_VSWITCHD" "unix:$d/db.sock" --unixctl="$d/vswitchd.ctl" \
                --log-file="$d/vswitchd.log" > /dev/null 2>&1 &
            PIDS+=($!)
            for _ in $(seq 1 100); do [ -S "$d/vswitchd.ctl" ] && break; sleep 0.1; done
            ovs-vsctl --db="unix:$d/db.sock" --timeout=30 add-br br0 -- set bridge br0 datapath_type=netdev || return 1
            for i in $(seq 0 $((n - 1))); do
                ovs-vsctl --db="unix:$d/db.sock" --timeout=30 add-port br0 "p$i" -- set Interface "p$i" type=dpdk \
                    "options:dpdk-devargs=net_memif$i,role=server,socket=$WORK/p$i.sock,socket-abstract=no" \
                    options:n_rxq=2 || return 1
            done
            ;;
    esac
    # Wait for every server socket.
    for i in $(seq 0 $((n - 1))); do
        for _ in $(seq 1 100); do [ -S "$WORK/p$i.sock" ] && break; sleep 0.1; done
        [ -S "$WORK/p$i.sock" ] || { echo "loopback.sh: $1 did not create p$i.sock" >&2; return 1; }
    done
}
usctl() { "$BIN/uswitchctl" --control "$WORK/ctl.sock" "$@" > /dev/null; }

switch_clear() {
    case $SWITCH_KIND in
        testpmd) TP_SNAP=$(tp_snapshot sw) ;;
        uswitch-*) "$BIN/uswitchctl" --control "$WORK/ctl.sock" stats --worker --clear > /dev/null ;;
        ovs) ovs-appctl -t "$WORK/ovs/vswitchd.ctl" dpif-netdev/pmd-stats-clear > /dev/null ;;
    esac
}

switch_cycles() { # prints busy cycles per packet since switch_clear
    case $SWITCH_KIND in
        testpmd)
            local now; now=$(tp_snapshot sw)
            echo "$TP_SNAP $now" | awk 'NF == 4 && $4 > $2 {printf "%.1f", ($3 - $1) / ($4 - $2)}'
            ;;
        uswitch-*)
            # busy cycles/packet without stalled iterations (preemption). To the row's note
            # (via $WORK/stall.txt): the busy share of the loop and packets per busy
            # iteration (a switch well below 100 % busy with small bursts waits for its
            # reflector), and the figure with stalls (as testpmd and OVS count).
            "$BIN/uswitchctl" --control "$WORK/ctl.sock" --json stats --worker \
                | python3 -c 'import json,sys
w=json.load(sys.stdin); print(round(w["busy_cycles_per_packet"], 1))
notes=[]
loop=w["busy_cycles"] + w["idle_cycles"]
if loop and "packets_per_busy_iteration" in w:
    notes.append("busy %.0f %%, %.1f pkt/busy iter" % (100.0 * w["busy_cycles"] / loop, w["packets_per_busy_iteration"]))
if w.get("stalls"):
    notes.append("%d stalls, %.1f cyc/pkt incl. stalls" % (w["stalls"], w.get("busy_cycles_per_packet_with_stalls", 0)))
if notes:
    open(sys.argv[1], "w").write("; ".join(notes))' "$WORK/stall.txt"
            ;;
        ovs)
            ovs-appctl -t "$WORK/ovs/vswitchd.ctl" dpif-netdev/pmd-stats-show \
                | grep -o 'avg processing cycles per packet: *[0-9.]*' | head -1 | awk '{print $NF}'
            ;;
    esac
}

# perf_worker SECS: samples uswitchd's worker thread for SECS seconds, report to $PERF_OUT.
perf_worker() {
    local pid='' tid='' t p
    for p in "${PIDS[@]}"; do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = uswitchd ] && pid=$p; done
    for t in /proc/"$pid"/task/*; do
        [ "$(cat "$t/comm" 2>/dev/null)" = uswitch-worker ] && tid=${t##*/}
    done
    if [ -z "$tid" ] || ! command -v perf > /dev/null; then
        echo "loopback.sh: perf or the worker thread not found; no profile" >&2
        sleep "$1"
        return
    fi
    perf record -q -e cpu-clock -g -t "$tid" -o "$WORK/perf.data" -- sleep "$1" > /dev/null 2>&1
    {
        echo "# perf record -e cpu-clock -g -t <uswitch-worker tid> during $2"
        perf report -i "$WORK/perf.data" --no-children --percent-limit 0.5 --stdio 2>/dev/null \
            | grep -v '^$' | head -150
    } > "$PERF_OUT"
    # Every sampled function, only its instructions with >= 0.2 % of the function's samples
    # (and the source line each comes from): where inside a function the cycles go.
    perf annotate -i "$WORK/perf.data" --stdio 2>/dev/null | awk '
        /Source code & Disassembly/ { print ""; print; next }
        /^ +: [0-9]+ / { src = $0; next }
        $1 ~ /^[0-9.]+$/ && $2 == ":" && $1 + 0 >= 0.2 { if (src != "") print src; src = ""; print }
    ' > "${PERF_OUT%.txt}.annotate.txt"
}

# window SWITCH NAME: the measurement window (perf of the worker when asked), with the core
# placement probe: `uswitch-c2c` (SCHED_FIFO when chrt can) bounces a cache line between CPU 0
# and CPU 1 once a second, 2000 round trips (under 1 ms) each, and C2C gets its ns per round
# trip as a comma list. On a VM whose host moves the two vCPUs between cores that share an L3
# and cores that do not, every switch's rate follows that placement (docs/benchmarks.md).
# wait_links_up ERRFILE: until uswitch-bench says its links are up (at most 15 s).
wait_links_up() {
    for _ in $(seq 1 150); do grep -q 'links up' "$1" && break; sleep 0.1; done
}
C2C=''
RT=()
c2c() { "${RT[@]}" "$BIN/uswitch-c2c" --cores 0,1 "$@" 2> /dev/null; }
chrt -f 50 true 2>/dev/null && RT=(chrt -f 50)
window() {
    local n c2c_pid
    n=$(awk -v w="$WINDOW" 'BEGIN {n = int(w); print (n < 1 ? 1 : n)}')
    c2c --samples "$n" --interval-ms 1000 > "$WORK/c2c.txt" &
    c2c_pid=$!
    PIDS+=("$c2c_pid")
    if [ -n "$PERF_OUT" ] && [[ "$1" = uswitch-* ]] && [[ "$2" =~ $PERF_CASE ]]; then
        perf_worker "$WINDOW" "$2"
    else
        sleep "$WINDOW"
    fi
    wait "$c2c_pid" 2> /dev/null
    C2C=$(grep -E '^[0-9.]+$' "$WORK/c2c.txt" | paste -sd, -)
}

# ---- one case -------------------------------------------------------------------------------
run_case() { # SWITCH REFLECTOR NPORTS BURST
    local sw=$1 rf=$2 n=$3 burst=$4
    local name="$sw/$rf/${n}p/b$burst"
    [[ "$name" =~ $CASES ]] || return 0
    echo "== $name" >&2
    local mpps='' cycles='' agg='' note='' rcyc=''
    C2C=''
    if ! switch_start "$sw" "$n" "$burst"; then
        note='switch failed to start'
    else
        case $rf in
            testpmd)
                local q=''
                [ "$sw" = ovs ] && q='--rxq=2 --txq=2'
                # shellcheck disable=SC2046,SC2086
                tp_start rf 0@1,1@1 $(vdevs client "$n" ",rsize=$RING_LOG2") -- -i --forward-mode=io \
                    --burst="$burst" $q \
                    && tp_wait_prompt rf || note='reflector failed to start'
                if [ -z "$note" ]; then
                    sleep 2   # memif clients connect on a 1 s timer
                    tp_cmd rf start tx_first
                    sleep "$WARMUP"
                    switch_clear
                    tp_cmd rf clear port stats all
                    window "$sw" "$name"
                    local l; l=$(tp_lines rf)
                    tp_cmd rf show port stats all
                    cycles=$(switch_cycles)
                    sleep 0.3
                    local rx; rx=$(tp_rx_packets rf "$l")
                    if [ -n "$rx" ]; then
                        agg=$(echo "$rx" | awk -v w="$WINDOW" '{s+=$1} END {printf "%.3f", s/w/1e6}')
                        mpps=$(echo "$rx" | awk -v w="$WINDOW" '{s+=$1; n++} END {printf "%.3f", s/n/w/1e6}')
                    else
                        note='no reflector counters'
                    fi
                fi
                ;;
            bench)
                if true; then
                    local socks=() i q=1
                    [ "$sw" = ovs ] && q=2
                    for i in $(seq 0 $((n - 1))); do socks+=(-s "$WORK/p$i.sock"); done
                    # uswitch-bench refuses a server cap below its --ring-size (it never shrinks
                    # its rings silently), so under --max-ring-log2 it asks for the cap.
                    local rlog2=$RING_LOG2
                    if [[ "$sw" = uswitch-* && -n "$MAX_RING_LOG2" && "$MAX_RING_LOG2" -lt "$rlog2" ]]; then
                        rlog2=$MAX_RING_LOG2
                    fi
                    "$BIN/uswitch-bench" reflect "${socks[@]}" --queues "$q" --core 1 --burst "$burst" \
                        --ring-size "$rlog2" --inject "$INJECT" --warmup "$WARMUP" --duration "$WINDOW" --linger 3 --json \
                        > "$WORK/rf.json" 2> "$WORK/rf.err" &
                    local rpid=$!
                    PIDS+=($rpid)
                    wait_links_up "$WORK/rf.err"
                    sleep "$WARMUP"
                    switch_clear
                    window "$sw" "$name"
                    cycles=$(switch_cycles)
                    wait "$rpid" 2>/dev/null
                    if [ -s "$WORK/rf.json" ]; then
                        local reinj
                        read -r mpps agg rcyc reinj < <(python3 -c 'import json,sys
r=json.load(open(sys.argv[1])); c=r.get("busy_cycles_per_packet")
print("%.3f %.3f %s %d" % (r["rx_mpps_per_link"], r["rx_pps"]/1e6, "%.1f" % c if c else "-", r.get("reinjections", 0)))' "$WORK/rf.json")
                        [ "${reinj:-0}" != 0 ] && note="reflector re-injected $reinj times (loop died)"
                    else
                        note="reflector failed: $(tail -1 "$WORK/rf.err")"
                    fi
                fi
                ;;
        esac
    fi
    kill_case
    if [ -n "$mpps" ] && awk -v m="$mpps" 'BEGIN {exit !(m + 0 == 0)}'; then
        note="DEAD: reflector received nothing in the window${note:+; $note}"
        mpps='' agg='' cycles=''
    fi
    if [ -s "$WORK/stall.txt" ]; then note="${note:+$note; }$(cat "$WORK/stall.txt")"; fi
    rm -f "$WORK/stall.txt"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sw" "$rf" "$n" "$burst" "${mpps:--}" "${agg:--}" \
        "${cycles:--}" "${rcyc:--}" "$note" "$ROUND" "${C2C:--}" >> "$RESULTS"
    echo "   Mpps/dir ${mpps:--}  aggregate ${agg:--}  switch cycles/pkt ${cycles:--} ${note}${C2C:+ (c2c ns: $C2C)}" >&2
}

# latency_case SWITCH: uswitch-bench latency, paced at 1 Mpps, tx on port 0, rx on port 1.
LAT=$WORK/latency.tsv
: > "$LAT"
latency_case() {
    local sw=$1 name="$1/latency/1Mpps"
    [[ "$name" =~ $CASES ]] || return 0
    echo "== $name" >&2
    local res='- - - - -' note=''
    C2C=''
    if switch_start "$sw" 2 32; then
        local q=1
        [ "$sw" = ovs ] && q=2
        "$BIN/uswitch-bench" latency -s "$WORK/p0.sock" -s "$WORK/p1.sock" --queues "$q" --core 1 \
            --rate 1000000 --warmup "$WARMUP" --duration "$WINDOW" --json \
            > "$WORK/lat.json" 2> "$WORK/lat.err" &
        local lpid=$!
        PIDS+=($lpid)
        # Core placement, outside the measured window (a probe in it would delay frames): once
        # in the warm-up, once right after the run.
        wait_links_up "$WORK/lat.err"
        sleep "$(awk -v w="$WARMUP" 'BEGIN {print w / 2}')"
        local c2c_a c2c_b
        c2c_a=$(c2c)
        wait "$lpid" 2>/dev/null
        c2c_b=$(c2c)
        C2C=$(printf '%s\n%s\n' "$c2c_a" "$c2c_b" | grep -E '^[0-9.]+$' | paste -sd, -)
        if [ -s "$WORK/lat.json" ]; then
            res=$(python3 -c 'import json,sys
r=json.load(open(sys.argv[1])); l=r.get("latency") or {}
f=lambda k: "%.2f" % (l[k]/1000) if k in l else "-"
print("%.3f %s %s %s %s" % (r["rx_pps"]/1e6, f("p50_ns"), f("p99_ns"), f("p99_9_ns"), f("max_ns")))' "$WORK/lat.json")
        else
            note="failed: $(tail -1 "$WORK/lat.err")"
        fi
    else
        note='switch failed to start'
    fi
    kill_case
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sw" $res "${C2C:--}" "$note" >> "$LAT"
    echo "   rx Mpps, p50/p99/p99.9/max us: $res $note" >&2
}

# ---- vhost-user transport (issue 7): cases "<switch>/vhost/testpmd/2p/b<burst>" -------------------
# The switch under test owns two vhost-user SERVER sockets (testpmd: net_vhost io-fwd; uswitch:
# two vhost-user ports, bridge or xconnect); the reflector is a testpmd with two net_virtio_user
# ports (clients), io fwd, tx-first. Rows go to their own table.
VRESULTS=$WORK/vhost.tsv
: > "$VRESULTS"
vhost_switch_start() { # KIND BURST
    SWITCH_KIND=$1
    local burst=$2 i
    rm -f "$WORK"/v*.sock
    case $1 in
        testpmd)
            tp_start sw 0@0,1@0 --vdev "net_vhost0,iface=$WORK/v0.sock,queues=1" \
                --vdev "net_vhost1,iface=$WORK/v1.sock,queues=1" -- -i --forward-mode=io \
                --burst="$burst" --record-core-cycles || return 1
            tp_wait_prompt sw || return 1
            tp_cmd sw start
            ;;
        uswitch-bridge|uswitch-xconnect)
            "$BIN/uswitchd" --control "$WORK/ctl.sock" --no-state --core 0 --burst "$burst" --log-level warn \
                > "$WORK/uswitchd.log" 2>&1 &
            PIDS+=($!)
            for _ in $(seq 1 100); do [ -S "$WORK/ctl.sock" ] && break; sleep 0.1; done
            local attach=()
            if [ "$1" = uswitch-bridge ]; then usctl bridge add br0 || return 1; attach=(--bridge br0); fi
            for i in 0 1; do
                usctl port add "v$i" vhost-user --socket "$WORK/v$i.sock" --mode server "${attach[@]}" || return 1
            done
            [ "$1" = uswitch-xconnect ] && { usctl xconnect v0 v1 || return 1; }
            ;;
    esac
    for i in 0 1; do
        for _ in $(seq 1 100); do [ -S "$WORK/v$i.sock" ] && break; sleep 0.1; done
        [ -S "$WORK/v$i.sock" ] || { echo "loopback.sh: $1 did not create v$i.sock" >&2; return 1; }
    done
}
vhost_case() { # SWITCH BURST
    local sw=$1 burst=$2 name="$1/vhost/testpmd/2p/b$2"
    [[ "$name" =~ $CASES ]] || return 0
    echo "== $name" >&2
    local mpps='' agg='' cycles='' note=''
    if ! vhost_switch_start "$sw" "$burst"; then
        note='switch failed to start'
    elif ! { tp_start rf 0@1,1@1 --single-file-segments \
                --vdev "net_virtio_user0,path=$WORK/v0.sock,queues=1" \
                --vdev "net_virtio_user1,path=$WORK/v1.sock,queues=1" \
                -- -i --forward-mode=io --burst="$burst" && tp_wait_prompt rf; }; then
        note='reflector failed to start'
    else
        sleep 1
        tp_cmd rf start tx_first
        sleep "$WARMUP"
        switch_clear
        tp_cmd rf clear port stats all
        sleep "$WINDOW"
        local l; l=$(tp_lines rf)
        tp_cmd rf show port stats all
        cycles=$(switch_cycles)
        sleep 0.3
        local rx; rx=$(tp_rx_packets rf "$l")
        if [ -n "$rx" ]; then
            agg=$(echo "$rx" | awk -v w="$WINDOW" '{s+=$1} END {printf "%.3f", s/w/1e6}')
            mpps=$(echo "$rx" | awk -v w="$WINDOW" '{s+=$1; n++} END {printf "%.3f", s/n/w/1e6}')
        else
            note='no reflector counters'
        fi
    fi
    kill_case
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$sw" "$burst" "${mpps:--}" "${agg:--}" "${cycles:--}" "$note" >> "$VRESULTS"
    echo "   Mpps/dir ${mpps:--}  aggregate ${agg:--}  switch cycles/pkt ${cycles:--} ${note}" >&2
}
vhost_summary() { # prints the vhost-user table (and appends it to --out)
    [ -s "$VRESULTS" ] || return 0
    python3 - "$VRESULTS" "$OUT" <<'PYEOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def num(s):
    try: return float(s)
    except ValueError: return None
base = {b: (num(agg), num(cyc)) for sw, b, m, agg, cyc, note in rows if sw == "testpmd"}
lines = ["", "vhost-user: switch owns two vhost-user server ports; reflector testpmd with two net_virtio_user ports, io fwd, tx-first; 64 B.", "",
         "| switch | transport | burst | Mpps/dir | aggregate Mpps | switch cycles/pkt | Mpps vs testpmd net_vhost | cycles vs testpmd | note |",
         "|---|---|---:|---:|---:|---:|---:|---:|---|"]
for sw, b, m, agg, cyc, note in rows:
    ba, bc = base.get(b, (None, None))
    a, c = num(agg), num(cyc)
    r_m = f"{a / ba:.2f}x" if a and ba else "-"
    r_c = f"{c / bc:.2f}x" if c and bc else "-"
    label = "testpmd net_vhost io-fwd" if sw == "testpmd" else sw
    lines.append(f"| {label} | vhost-user | {b} | {m} | {agg} | {cyc} | {r_m} | {r_c} | {note} |")
text = "\n".join(lines)
print(text)
if sys.argv[2]:
    open(sys.argv[2], "a").write(text + "\n")
PYEOF
}

# The machine, for the table header.
tsc_mhz() {
    local m
    m=$(dmesg 2>/dev/null | grep -o 'tsc: Refined TSC clocksource calibration: [0-9.]* MHz' | tail -1 | awk '{print $(NF-1)}')
    [ -z "$m" ] && m=$(dmesg 2>/dev/null | grep -o 'tsc: Detected [0-9.]* MHz' | tail -1 | awk '{print $(NF-1)}')
    [ -z "$m" ] && m="$(grep -m1 'cpu MHz' /proc/cpuinfo | awk '{print $NF}') (cpu MHz)"
    echo "$m"
}
MACHINE="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), TSC $(tsc_mhz) MHz, $(nproc) CPUs"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "loopback.sh: warm-up ${WARMUP}s, window ${WINDOW}s; machine: $MACHINE; load average $LOAD_BEFORE" >&2
[ $HAVE_OVS = 1 ] || echo "loopback.sh: NOTE: OVS-DPDK not installed (apt-get install openvswitch-switch-dpdk); skipping it" >&2
for ROUND in $(seq 1 "$REPEAT"); do
[ "$REPEAT" -gt 1 ] && echo "loopback.sh: round $ROUND of $REPEAT" >&2
for burst in 32 256; do
    for rf in testpmd bench; do
        run_case testpmd "$rf" 2 "$burst"
        [ $HAVE_OVS = 1 ] && run_case ovs "$rf" 2 "$burst"
        run_case uswitch-bridge "$rf" 2 "$burst"
        run_case uswitch-xconnect "$rf" 2 "$burst"
        run_case testpmd "$rf" 16 "$burst"
        run_case uswitch-bridge "$rf" 16 "$burst"
        run_case uswitch-xconnect "$rf" 16 "$burst"
    done
done

for sw in testpmd ovs uswitch-bridge uswitch-xconnect; do
    [ "$sw" = ovs ] && [ $HAVE_OVS = 0 ] && continue
    latency_case "$sw"
done
done

for burst in 32 256; do
    for sw in testpmd uswitch-bridge uswitch-xconnect; do vhost_case "$sw" "$burst"; done
done

PLACEMENT_LIB="$ROOT/benches/lib" python3 - "$RESULTS" "$WARMUP" "$WINDOW" "$OUT" "$LAT" "$MACHINE" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)" "$RING_LOG2" "$MAX_RING_LOG2" "$REPEAT" "$INJECT" <<'EOF'
import os, sys
sys.path.insert(0, os.environ["PLACEMENT_LIB"])
import placement as placement_lib
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
warm, win, out = sys.argv[2], sys.argv[3], sys.argv[4]
machine, load0, load1, rlog2 = sys.argv[6], sys.argv[7], sys.argv[8], int(sys.argv[9])
cap = f" uswitch's memif ports cap the client's rings at {1 << int(sys.argv[10])} slots (--max-ring-log2; testpmd and OVS as switches do not)." if sys.argv[10] else ""
repeat = int(sys.argv[11])
inject = int(sys.argv[12])
def num(s):
    try: return float(s)
    except ValueError: return None
def median(v):
    v = sorted(v)
    if not v: return None
    k = len(v) // 2
    return v[k] if len(v) % 2 else (v[k - 1] + v[k]) / 2
def fmt(x, d):
    return "-" if x is None else f"{x:.{d}f}"
# Core placement: uswitch-c2c's ns per round trip between CPU 0 and CPU 1, sampled once a second
# in each window (latency cases: once in the warm-up, once after). A run is near when all its
# samples are under the split below, far when none is, else mixed.
def samples(field):
    return [x for x in map(num, field.split(",")) if x is not None]
probes = {i: samples(r[10]) for i, r in enumerate(rows)}
# Latency rows: switch, rx Mpps, p50, p99, p99.9, max, c2c samples, note.
lat = [(l.rstrip("\n").split("\t") + [""] * 8)[:8] for l in open(sys.argv[5]) if l.strip()]
lat_probes = [samples(r[6]) for r in lat]
# The near/far split of the whole benchmark run (benches/lib/placement.py: the middle of the
# largest jump between samples with enough samples on each side, else a fixed 150 ns). Levels
# seen on an AMD EPYC guest: ~28 ns (SMT siblings), ~65-90 ns (one L3), ~300-440 ns (not).
split, split_why = placement_lib.split_of([x for v in list(probes.values()) + lat_probes for x in v])
def placement(samples):
    return placement_lib.placement(samples, split)
lat_pl = [placement(v) for v in lat_probes]
# Per case (in first-seen order): its runs, each (round, mpps, agg, cyc, rcyc, note, raw, placement).
cases, order = {}, []
for i, (sw, rf, n, b, mpps, agg, cyc, rcyc, note, rnd, _c2c) in enumerate(rows):
    k = (sw, rf, n, b)
    if k not in cases:
        cases[k] = []
        order.append(k)
    pl = placement(probes[i])
    if pl:
        lo, hi = min(probes[i]), max(probes[i])
        note = (note + "; " if note else "") + f"cores {pl} (c2c {lo:.0f}-{hi:.0f} ns)"
    cases[k].append((int(rnd), num(mpps), num(agg), num(cyc), num(rcyc), note, (mpps, agg, cyc, rcyc), pl))
def figures(k):
    """(mpps, agg, cyc, rcyc, note) as printed: the run itself, or medians over the rounds."""
    runs = cases[k]
    if len(runs) == 1:
        r = runs[0]
        return r[6] + (r[5],)
    med = [median([r[i] for r in runs if r[i] is not None]) for i in (1, 2, 3, 4)]
    dead = sum(1 for r in runs if r[2] is None)
    note = f"median of {len(runs) - dead} runs; aggregate " + ", ".join(fmt(r[2], 3) for r in runs) \
        + "; cycles " + ", ".join(fmt(r[3], 1) for r in runs)
    if dead: note += f"; {dead} runs without a figure: " + "; ".join(r[5] for r in runs if r[2] is None)
    pls = [r[7] for r in runs if r[7]]
    if pls: note += "; cores " + ", ".join(pls)
    return (fmt(med[0], 3), fmt(med[1], 3), fmt(med[2], 1), fmt(med[3], 1), note)
base = {}
for k in order:
    sw, rf, n, b = k
    if sw == "testpmd" and n == "2":
        f = figures(k)
        base[(rf, b)] = (num(f[0]), num(f[1]), num(f[2]))
rounds = f" Each figure is the median of {repeat} rounds." if repeat > 1 else ""
lines = [f"Machine: {machine}; load average {load0} before, {load1} after.",
         f"Warm-up {warm} s, window {win} s, 64 B frames; switch on CPU 0, reflector on CPU 1; reflector memif rings {1 << rlog2} slots; uswitch-bench reflector injects {inject} packets per link (testpmd --tx-first: one burst per port).{cap}{rounds}"]
if order:
    lines += ["", "| switch | reflector | ports | burst | Mpps/dir | aggregate Mpps | switch cycles/pkt | Mpps vs testpmd | cycles vs testpmd | reflector cycles/pkt | note |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
for k in order:
    sw, rf, n, b = k
    mpps, agg, cyc, rcyc, note = figures(k)
    bm, ba, bc = base.get((rf, b), (None, None, None))
    a, c = num(agg), num(cyc)
    r_m = f"{a / ba:.2f}x" if a and ba else "-"
    r_c = f"{c / bc:.2f}x" if c and bc else "-"
    lines.append(f"| {sw} | {rf} | {n} | {b} | {mpps} | {agg} | {cyc} | {r_m} | {r_c} | {rcyc} | {note} |")
if order:
    lines.append("")
    lines.append("Ratios: aggregate Mpps and cycles/packet divided by testpmd io-fwd's (2 ports) with the same reflector and burst.")
# 16 ports against 2 ports: the same switch, reflector and burst, paired by round.
scale = []
for k in order:
    sw, rf, n, b = k
    k2 = (sw, rf, "2", b)
    if n != "16" or k2 not in cases:
        continue
    two = {r[0]: r[2] for r in cases[k2]}
    per = [(r[2] / two[r[0]] - 1) * 100 for r in cases[k] if r[2] and two.get(r[0])]
    if per:
        scale.append((sw, rf, b, per))
if scale:
    lines += ["", "16 ports against 2 ports: aggregate Mpps, change in % (target: within 15 %).", "",
              "| switch | reflector | burst | per round | median |", "|---|---|---:|---|---:|"]
    for sw, rf, b, per in scale:
        lines.append(f"| {sw} | {rf} | {b} | " + ", ".join(f"{p:+.0f} %" for p in per) + f" | {median(per):+.0f} % |")
# The same figures over the runs of one placement only: near and far runs never mixed.
for pl in ("near", "far"):
    if repeat < 2 or not any(r[7] == pl for k in order for r in cases[k]):
        continue
    med = {}
    for k in order:
        runs = [r for r in cases[k] if r[7] == pl and r[2] is not None]
        if runs:
            med[k] = (len(runs), median([r[2] for r in runs]),
                      median([r[3] for r in runs if r[3] is not None]))
    lines += ["", f"Runs with the cores {pl} only ({'every' if pl == 'near' else 'no'} c2c sample under "
              f"{split:.0f} ns, {split_why}): medians "
              "over those runs; ratios against testpmd io-fwd's 2-port median of the same placement; "
              "16 ports against the same switch's 2-port median of the same placement.", "",
              "| switch | reflector | ports | burst | runs | aggregate Mpps | switch cycles/pkt | Mpps vs testpmd | cycles vs testpmd | 16 vs 2 ports |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k, (cnt, a, c) in med.items():
        sw, rf, n, b = k
        t = med.get(("testpmd", rf, "2", b))
        two = med.get((sw, rf, "2", b))
        r_m = f"{a / t[1]:.2f}x" if t and t[1] else "-"
        r_c = f"{c / t[2]:.2f}x" if t and t[2] and c else "-"
        sc = f"{(a / two[1] - 1) * 100:+.0f} %" if n == "16" and two and two[1] else "-"
        lines.append(f"| {sw} | {rf} | {n} | {b} | {cnt} | {a:.3f} | {fmt(c, 1)} | {r_m} | {r_c} | {sc} |")
if lat:
    lines += ["", "Latency: `uswitch-bench latency` paced at 1 Mpps total, 64 B, port 0 -> switch -> port 1 (one-way, us). "
              "Cores: uswitch-c2c once in the warm-up and once after the run.", "",
              "| switch | rx Mpps | p50 | p99 | p99.9 | max | cores | note |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for r, pl in zip(lat, lat_pl):
        cores = f"{pl} ({r[6]} ns)" if pl else "-"
        lines.append("| " + " | ".join(r[:6]) + f" | {cores} | {r[7]} |")
    if repeat > 1:
        p99 = {}
        for r, pl in zip(lat, lat_pl):
            p99.setdefault(r[0], []).append((num(r[3]), r[3], pl))
        lines += ["", "| switch | p99 per run (us) | median p99 | cores per run | median p99, near runs |",
                  "|---|---|---:|---|---:|"]
        for sw, v in p99.items():
            nv = [x for x, _, pl in v if pl == "near" and x is not None]
            lines.append(f"| {sw} | " + ", ".join(t for _, t, _ in v)
                         + f" | {fmt(median([x for x, _, _ in v if x is not None]), 2)} | "
                         + ", ".join(pl or "-" for _, _, pl in v)
                         + f" | {fmt(median(nv), 2) + f' ({len(nv)})' if nv else '-'} |")
text = "\n".join(lines)
print(text)
if out:
    open(out, "w").write(text + "\n")
EOF
vhost_summary
