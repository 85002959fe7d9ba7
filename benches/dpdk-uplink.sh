#!/usr/bin/env bash
# DPDK uplink ports (net_af_packet vdevs) and kernel ports next to a Linux bridge, measured in
# the same run (issue 8).
#
# Topology: two network namespaces A (10.81.0.1/24) and B (10.81.0.2/24), each with a veth
# whose host end is, in turn:
#   (a) uswitch-dpdk    a uswitch DPDK port `net_af_packet<N>,iface=<veth>` of bridge br0
#                       (the PMD's own AF_PACKET rings; uswitchd built with --features dpdk)
#   (b) uswitch-kernel  a uswitch kernel (AF_PACKET TPACKET_V3) port of bridge br0
#   (c) linux-bridge    a port of a Linux bridge
# The uswitchd worker busy-polls on core 0. Traffic: iperf3 from A to B, client and server
# pinned to core 1:
#   udp-small  UDP, 18-byte payloads (60-byte frames), unlimited rate: packets/s received
#   udp-1400   UDP, 1400-byte payloads, unlimited rate: Mbit/s and packets/s received
#   tcp        one TCP stream: Mbit/s
# TSO/GSO/GRO are off on all veths in every mode (neither uswitch port type carries GSO
# super-frames), and so is tx checksum offload in the namespaces (net_af_packet does not
# complete partial checksums), so every mode forwards the same MTU-sized, checksummed frames.
#
# Usage: benches/dpdk-uplink.sh [--short] [--time S] [--out FILE] [--no-kernel]
#   --short      3 s per case (CI / smoke), default 10 s.
#   --out FILE   also write the Markdown table to FILE.
#   --no-kernel  skip mode (b).
# Needs root, iproute2, ethtool, iperf3, hugepages (scripts/hugepages.sh; falls back to
# --no-huge) and uswitchd built with DPDK: cargo build --release -p uswitch-engine
# --features dpdk --bins. Takes /tmp/uswitch-e2e.lock while it runs (set
# USWITCH_E2E_LOCKED=1 if the caller already holds it). Everything it creates is removed on
# exit; processes are killed by PID.
set -u -o pipefail

TIME=10
OUT=''
KERNEL=1
while [ $# -gt 0 ]; do
    case "$1" in
        --short) TIME=3 ;;
        --time) TIME=$2; shift ;;
        --out) OUT=$2; shift ;;
        --no-kernel) KERNEL=0 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "dpdk-uplink.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

SELF=dpdk-uplink.sh
BUILD_HINT="cargo build --release -p uswitch-engine --features dpdk --bins"
TAG=db
WORK_TAG=dbench
SUBNET=10.81.0
# tx checksum offload off too: net_af_packet reads frames without PACKET_VNET_HDR, so a
# veth frame with a partial (offloaded) TCP/UDP checksum would arrive at B unfinished.
NS_ETHTOOL_EXTRA='tx off'
# shellcheck source=lib/uplink.sh
. "$(dirname "$0")/lib/uplink.sh"

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
setup_ns "$NSA" "$VA" 10.81.0.1/24
setup_ns "$NSB" "$VB" 10.81.0.2/24

declare -A RES
measure() { # mode
    for c in udp-small udp-1400 tcp; do
        RES[$1,$c]=$(run_case "$c")
        echo "  $1 $c: ${RES[$1,$c]} (pps Mbit/s)" >&2
    done
}

# A uswitchd with bridge br0 and two ports: start_uswitch MODE PORT-ADD-ARGS-A PORT-ADD-ARGS-B
start_uswitch() {
    local mode=$1 a=$2 b=$3 extra=()
    [ "$mode" = dpdk ] && extra=(--dpdk-eal-args "$EAL")
    "$BIN/uswitchd" --no-state --control "$WORK/ctl.sock" --core 0 --log-level warn "${extra[@]}" \
        >"$WORK/uswitchd-$mode.log" 2>&1 &
    USWD_PID=$!
    for _ in $(seq 100); do "${CTL[@]}" show >/dev/null 2>&1 && break; sleep 0.1; done
    "${CTL[@]}" bridge add br0 >/dev/null || die "uswitchd did not start: $(cat "$WORK/uswitchd-$mode.log")"
    # shellcheck disable=SC2086
    "${CTL[@]}" port add pa $a --bridge br0 >/dev/null || die "port add pa $a: $(tail -5 "$WORK/uswitchd-$mode.log")"
    # shellcheck disable=SC2086
    "${CTL[@]}" port add pb $b --bridge br0 >/dev/null || die "port add pb $b"
    for _ in $(seq 100); do
        # Pretty JSON: "link_up": true (a space after the colon).
        n=$("${CTL[@]}" --json stats | grep -c '"link_up": true')
        [ "$n" -ge 2 ] && break
        sleep 0.1
    done
    ip netns exec "$NSA" ping -c 3 -i 0.2 -W 2 -q 10.81.0.2 >/dev/null || die "no ping through uswitch ($mode)"
    "${CTL[@]}" stats --clear >/dev/null
}
stop_uswitch() { # mode
    "${CTL[@]}" stats >"$WORK/uswitch-$1-stats.txt"
    kill "$USWD_PID"; wait "$USWD_PID" 2>/dev/null; USWD_PID=''
}
CTL=("$BIN/uswitchctl" --control "$WORK/ctl.sock")
if grep -qs hugetlbfs /proc/mounts && [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -ge 160 ]; then
    EAL="--no-pci -m 256 --in-memory"
else
    EAL="--no-pci -m 256 --no-huge --no-shconf"
fi

# (a) uswitch DPDK ports (net_af_packet vdevs on the host veth ends).
start_uswitch dpdk "dpdk --devargs net_af_packet0,iface=$VA" "dpdk --devargs net_af_packet1,iface=$VB"
echo "uswitch DPDK ports (net_af_packet):" >&2
measure dpdk
stop_uswitch dpdk

# (b) uswitch kernel ports.
if [ "$KERNEL" = 1 ]; then
    start_uswitch kernel "kernel --iface $VA" "kernel --iface $VB"
    echo "uswitch kernel ports:" >&2
    measure kernel
    stop_uswitch kernel
fi

# (c) Linux bridge.
ip link add "$BR" type bridge || die "ip link add bridge"
ip link set "$BR" type bridge stp_state 0 forward_delay 0 2>/dev/null
ip link set "$VA" master "$BR"
ip link set "$VB" master "$BR"
ip link set "$BR" up
sleep 1
ip netns exec "$NSA" ping -c 3 -i 0.2 -W 2 -q 10.81.0.2 >/dev/null || die "no ping through the Linux bridge"
echo "Linux bridge:" >&2
measure linux

fmt() { # "pps mbps" -> "x.xxx Mpps, y Mbit/s"
    set -- $1
    printf "%.3f Mpps, %.0f Mbit/s" "$(echo "$1 / 1000000" | bc -l)" "$2"
}
cell() { # mode case
    local c=$2
    set -- ${RES[$1,$c]:-0 0}
    if [ "$c" = tcp ]; then printf "%.0f Mbit/s" "$2"; else fmt "$1 $2"; fi
}
ratio() { # mode case: mode / linux
    local c=$2 a b
    if [ "$c" = tcp ]; then
        a=$(echo "${RES[$1,$c]:-0 0}" | cut -d' ' -f2); b=$(echo "${RES[linux,$c]}" | cut -d' ' -f2)
    else
        a=$(echo "${RES[$1,$c]:-0 0}" | cut -d' ' -f1); b=$(echo "${RES[linux,$c]}" | cut -d' ' -f1)
    fi
    printf "%.2f" "$(echo "if ($b > 0) $a / $b else 0" | bc -l)"
}
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "DPDK (net_af_packet) and kernel ports vs Linux bridge ($(date -u +%Y-%m-%d), ${TIME} s per case, load average before: $LOAD, after: $LOAD_END, $(nproc) CPUs; iperf3 A->B on core 1, uswitchd worker on core 0; $(dpkg-query -W -f='DPDK ${Version}' libdpdk-dev 2>/dev/null || echo DPDK))"
    echo
    if [ "$KERNEL" = 1 ]; then
        echo "| case | uswitch DPDK ports (net_af_packet) | uswitch kernel ports | Linux bridge | DPDK / bridge | kernel / bridge |"
        echo "|---|---|---|---|---|---|"
    else
        echo "| case | uswitch DPDK ports (net_af_packet) | Linux bridge | DPDK / bridge |"
        echo "|---|---|---|---|"
    fi
    for c in udp-small udp-1400 tcp; do
        if [ "$KERNEL" = 1 ]; then
            printf "| %s | %s | %s | %s | %s | %s |\n" "$c" "$(cell dpdk $c)" "$(cell kernel $c)" "$(cell linux $c)" "$(ratio dpdk $c)" "$(ratio kernel $c)"
        else
            printf "| %s | %s | %s | %s |\n" "$c" "$(cell dpdk $c)" "$(cell linux $c)" "$(ratio dpdk $c)"
        fi
    done
    echo
    echo "uswitch port counters over the three cases (DPDK ports):"
    echo '```'
    cat "$WORK/uswitch-dpdk-stats.txt"
    echo '```'
} | tee "${OUT:-/dev/null}"
