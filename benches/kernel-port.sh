#!/usr/bin/env bash
# Kernel-port forwarding rate next to a Linux bridge, measured in the same run (issue 8).
#
# Topology (both modes): two network namespaces A (10.79.0.1/24) and B (10.79.0.2/24), each
# with a veth whose host end is (a) a uswitch kernel (AF_PACKET) port of bridge br0, with the
# uswitchd worker busy-polling on core 0, or (b) a port of a Linux bridge. Traffic: iperf3
# from A to B, client and server pinned to core 1:
#   udp-small  UDP, 18-byte payloads (60-byte frames), unlimited rate: packets/s received
#   udp-1400   UDP, 1400-byte payloads, unlimited rate: Mbit/s and packets/s received
#   tcp        one TCP stream: Mbit/s
# TSO/GSO/GRO are turned off on both namespace veths in both modes (the kernel port carries
# frames up to the MTU, not 64 KiB GSO super-frames; see docs/kernel-port.md), so both modes
# forward the same MTU-sized frames; tx checksum offload stays on (the kernel port completes
# checksums in software).
#
# Usage: benches/kernel-port.sh [--short] [--time S] [--out FILE]
#   --short      3 s per case (CI / smoke), default 10 s.
#   --out FILE   also write the Markdown table to FILE.
# Needs root, iproute2, ethtool, iperf3 (scripts/install-deps.sh) and the release build
# (cargo build --release -p uswitch-engine). Takes /tmp/uswitch-e2e.lock while it runs (set
# USWITCH_E2E_LOCKED=1 if the caller already holds it). Everything it creates (namespaces,
# veths, bridge, uswitchd) is removed on exit; processes are killed by PID.
set -u -o pipefail

TIME=10
OUT=''
while [ $# -gt 0 ]; do
    case "$1" in
        --short) TIME=3 ;;
        --time) TIME=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "kernel-port.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

SELF=kernel-port.sh
BUILD_HINT="cargo build --release -p uswitch-engine"
TAG=kb
WORK_TAG=kbench
SUBNET=10.79.0
NS_ETHTOOL_EXTRA=''
# shellcheck source=lib/uplink.sh
. "$(dirname "$0")/lib/uplink.sh"

setup_ns "$NSA" "$VA" 10.79.0.1/24
setup_ns "$NSB" "$VB" 10.79.0.2/24

declare -A RES
measure() { # mode
    for c in udp-small udp-1400 tcp; do
        RES[$1,$c]=$(run_case "$c")
        echo "  $1 $c: ${RES[$1,$c]} (pps Mbit/s)" >&2
    done
}

# (a) uswitch kernel ports.
"$BIN/uswitchd" --no-state --control "$WORK/ctl.sock" --core 0 --log-level warn \
    >"$WORK/uswitchd.log" 2>&1 &
USWD_PID=$!
CTL=("$BIN/uswitchctl" --control "$WORK/ctl.sock")
for _ in $(seq 50); do "${CTL[@]}" show >/dev/null 2>&1 && break; sleep 0.1; done
"${CTL[@]}" bridge add br0 >/dev/null || die "uswitchd did not start: $(cat "$WORK/uswitchd.log")"
"${CTL[@]}" port add ka kernel --iface "$VA" --bridge br0 >/dev/null || die "port add ka"
"${CTL[@]}" port add kb kernel --iface "$VB" --bridge br0 >/dev/null || die "port add kb"
for _ in $(seq 50); do
    n=$("${CTL[@]}" --json stats | grep -c '"link_up": true')
    [ "$n" -ge 2 ] && break
    sleep 0.1
done
ip netns exec "$NSA" ping -c 3 -i 0.2 -W 2 -q 10.79.0.2 >/dev/null || die "no ping through uswitch"
"${CTL[@]}" stats --clear >/dev/null
echo "uswitch kernel ports:" >&2
measure uswitch
"${CTL[@]}" stats >"$WORK/uswitch-stats.txt"
kill "$USWD_PID"; wait "$USWD_PID" 2>/dev/null; USWD_PID=''

# (b) Linux bridge.
ip link add "$BR" type bridge || die "ip link add bridge"
ip link set "$BR" type bridge stp_state 0 forward_delay 0 2>/dev/null
ip link set "$VA" master "$BR"
ip link set "$VB" master "$BR"
ip link set "$BR" up
sleep 1
ip netns exec "$NSA" ping -c 3 -i 0.2 -W 2 -q 10.79.0.2 >/dev/null || die "no ping through the Linux bridge"
echo "Linux bridge:" >&2
measure linux

fmt() { # "pps mbps" -> "x.xxx Mpps / y Mbit/s"
    set -- $1
    printf "%.3f Mpps, %.0f Mbit/s" "$(echo "$1 / 1000000" | bc -l)" "$2"
}
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "Kernel port vs Linux bridge ($(date -u +%Y-%m-%d), ${TIME} s per case, load average before: $LOAD, $(nproc) CPUs; iperf3 A->B on core 1, uswitchd worker on core 0)"
    echo
    echo "| case | uswitch kernel ports | Linux bridge | uswitch / bridge |"
    echo "|---|---|---|---|"
    for c in udp-small udp-1400 tcp; do
        set -- ${RES[uswitch,$c]}; up=$1; um=$2
        set -- ${RES[linux,$c]}; lp=$1; lm=$2
        if [ "$c" = tcp ]; then
            r=$(echo "if ($lm > 0) $um / $lm else 0" | bc -l)
            printf "| %s | %.0f Mbit/s | %.0f Mbit/s | %.2f |\n" "$c" "$um" "$lm" "$r"
        else
            r=$(echo "if ($lp > 0) $up / $lp else 0" | bc -l)
            printf "| %s | %s | %s | %.2f |\n" "$c" "$(fmt "${RES[uswitch,$c]}")" "$(fmt "${RES[linux,$c]}")" "$r"
        fi
    done
    echo
    echo "uswitch port counters over the three cases:"
    echo '```'
    cat "$WORK/uswitch-stats.txt"
    echo '```'
} | tee "${OUT:-/dev/null}"
