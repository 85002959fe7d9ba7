# Shared part of the uplink benchmarks (benches/kernel-port.sh, benches/dpdk-uplink.sh):
# prerequisite checks, the e2e lock, two namespaces A and B with veths, cleanup on exit, and
# one iperf3 case A -> B. Sourced after the caller parsed its arguments and set:
#   SELF        script name for messages            BUILD_HINT  how to build the binaries
#   TAG         2-letter tag of netns/veth/bridge names (e.g. kb: uswkb-a-PID, ukbaPID)
#   WORK_TAG    tag of the temp dir (/tmp/uswitch-WORK_TAG.XXXXXX)
#   SUBNET      first three octets of A (.1) and B (.2), e.g. 10.79.0
#   NS_ETHTOOL_EXTRA  extra `ethtool -K` settings for the namespace veths (may be empty)
# and TIME (seconds per case). Provides: ROOT BIN NSA NSB VA VB BR WORK, USWD_PID (set it when
# starting uswitchd: killed on exit), die, setup_ns, run_case.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${USWITCH_BIN:-$ROOT/target/release}
for b in uswitchd uswitchctl; do
    [ -x "$BIN/$b" ] || { echo "$SELF: $BIN/$b missing; run: $BUILD_HINT" >&2; exit 2; }
done
for c in ip iperf3 ethtool taskset; do
    command -v "$c" >/dev/null || { echo "$SELF: $c not installed (scripts/install-deps.sh)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "$SELF: needs root" >&2; exit 2; }

if [ "${USWITCH_E2E_LOCKED:-0}" != 1 ]; then
    exec 9>/tmp/uswitch-e2e.lock
    flock 9
fi

T=$$
NSA=usw$TAG-a-$T
NSB=usw$TAG-b-$T
VA=u${TAG}a$T
VB=u${TAG}b$T
BR=u${TAG}r$T
WORK=$(mktemp -d /tmp/uswitch-$WORK_TAG.XXXXXX)
USWD_PID=''
SRV_PID=''

cleanup() {
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null
    if [ -n "$USWD_PID" ]; then
        kill "$USWD_PID" 2>/dev/null
        wait "$USWD_PID" 2>/dev/null
    fi
    ip link del "$VA" 2>/dev/null
    ip link del "$VB" 2>/dev/null
    ip link del "$BR" 2>/dev/null
    ip netns del "$NSA" 2>/dev/null
    ip netns del "$NSB" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "$SELF: $*" >&2; exit 1; }

setup_ns() { # ns host-veth addr
    local ns=$1 v=$2 addr=$3
    ip netns add "$ns" || die "ip netns add $ns"
    ip link add "$v" type veth peer name "${v}p" || die "ip link add $v"
    echo 1 > "/proc/sys/net/ipv6/conf/$v/disable_ipv6"
    ip link set "${v}p" netns "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$addr" dev "${v}p"
    # shellcheck disable=SC2086 # NS_ETHTOOL_EXTRA is a list of words
    ip netns exec "$ns" ethtool -K "${v}p" tso off gso off gro off $NS_ETHTOOL_EXTRA >/dev/null 2>&1
    ip netns exec "$ns" ip link set "${v}p" up
    ethtool -K "$v" tso off gso off gro off >/dev/null 2>&1
    ip link set "$v" up
}

# One iperf3 case: prints "pps mbps" as received by B.
run_case() { # case
    local kind=$1 args=()
    case "$kind" in
        udp-small) args=(-u -b 0 -l 18) ;;
        udp-1400) args=(-u -b 0 -l 1400) ;;
        tcp) args=() ;;
    esac
    ip netns exec "$NSB" taskset -c 1 iperf3 -s -1 -p 5301 >"$WORK/srv.log" 2>&1 &
    SRV_PID=$!
    sleep 0.5
    ip netns exec "$NSA" taskset -c 1 iperf3 -c "$SUBNET.2" -p 5301 -t "$TIME" "${args[@]}" \
        >"$WORK/cli.log" 2>&1 || { cat "$WORK/cli.log" >&2; echo "0 0"; SRV_PID=''; return; }
    wait "$SRV_PID" 2>/dev/null
    SRV_PID=''
    # Receiver line: "[  5]   0.00-10.00  sec  x MBytes  y Mbits/sec  [jitter ms  lost/total (p%)]  receiver"
    awk -v kind="$kind" '
        / receiver$/ {
            for (i = 1; i <= NF; i++) {
                if ($i ~ /bits\/sec$/) { rate = $(i-1); unit = $i }
                if ($i ~ /^[0-9]+\/[0-9]+$/) { split($i, lt, "/"); lost = lt[1]; total = lt[2] }
                if ($i ~ /^[0-9.]+-[0-9.]+$/) { split($i, se, "-"); secs = se[2] - se[1] }
            }
        }
        END {
            m = rate
            if (unit ~ /^Gbits/) m = rate * 1000
            if (unit ~ /^Kbits/) m = rate / 1000
            pps = (kind == "tcp" || secs == 0) ? 0 : (total - lost) / secs
            printf "%.0f %.1f\n", pps, m
        }' "$WORK/cli.log"
}
