#!/usr/bin/env bash
# TCP throughput and ping RTT pod<->pod, measured in one run on these paths:
#   uswitch  : two netns with taps run by uswitch-agent (tap I/O io_uring), memif ports on one
#              uswitchd bridge
#   usw-rw   : the same with --tap-io rw (non-blocking read/write + epoll: the fallback)
#   usw-9000 : io_uring with MTU 9000 on the taps (frames chained over 2 KiB memif buffers)
#   veth     : two netns joined by a veth pair
#   linuxbr  : two netns, each with a veth into a Linux bridge in a third netns
# Needs root and release binaries (cargo build --release); installs iperf3 when missing. Rounds are interleaved; the
# median of ROUNDS runs per path is reported. Only addresses inside our own namespaces are used.
#   ROUNDS=3 SECS=5 container-agent/scripts/tcp-compare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for c in iperf3 python3; do
  command -v $c >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $c >/dev/null; }
done
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
B=${USWITCH_BIN_DIR:-$PWD/target/release}
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-5}
D=$(mktemp -d /tmp/usw-tcpcmp.XXXXXX)
P=usw-tc$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for n in u1 u2 r1 r2 j1 j2 v1 v2 b1 b2 br; do ip netns del $P-$n 2>/dev/null || true; done
  rm -rf "$D"
}
trap cleanup EXIT
for n in u1 u2 r1 r2 j1 j2 v1 v2 b1 b2 br; do ip netns add $P-$n; ip -n $P-$n link set lo up; done

# uswitch
declare -A apids  # agent PIDs per path (CPU accounting)
"$B/uswitchd" --control $D/ctl.sock --no-state --core 0 2>$D/usd.log & pids+=($!)
for i in $(seq 50); do [ -S $D/ctl.sock ] && break; sleep 0.1; done
"$B/uswitchctl" --control $D/ctl.sock bridge add br0 >/dev/null
for x in 1 2; do
  "$B/uswitchctl" --control $D/ctl.sock port add p$x memif --socket $D/p$x.sock --role server --bridge br0 >/dev/null
  "$B/uswitch-agent" --socket $D/p$x.sock --ifname eth1 --mac 02:c0:00:00:00:0$x --ip 10.201.0.$x/24 tap --netns $P-u$x --tap-io uring 2>$D/agent$x.log & pids+=($!); apids[u]+="$! "
  "$B/uswitchctl" --control $D/ctl.sock port add r$x memif --socket $D/r$x.sock --role server --bridge br0 >/dev/null
  "$B/uswitch-agent" --socket $D/r$x.sock --ifname eth1 --mac 02:c0:00:00:02:0$x --ip 10.205.0.$x/24 tap --netns $P-r$x --tap-io rw 2>$D/agentr$x.log & pids+=($!); apids[r]+="$! "
  "$B/uswitchctl" --control $D/ctl.sock port add j$x memif --socket $D/j$x.sock --role server --bridge br0 >/dev/null
  "$B/uswitch-agent" --socket $D/j$x.sock --ifname eth1 --mac 02:c0:00:00:01:0$x --ip 10.204.0.$x/24 --mtu 9000 tap --netns $P-j$x --tap-io uring 2>$D/agentj$x.log & pids+=($!); apids[j]+="$! "
done
# veth pair
ip link add vp1 netns $P-v1 type veth peer name vp2 netns $P-v2
ip -n $P-v1 addr add 10.202.0.1/24 dev vp1; ip -n $P-v1 link set vp1 up
ip -n $P-v2 addr add 10.202.0.2/24 dev vp2; ip -n $P-v2 link set vp2 up
# Linux bridge in its own netns
ip -n $P-br link add br0 type bridge; ip -n $P-br link set br0 up
for x in 1 2; do
  ip link add eth1 netns $P-b$x type veth peer name bp$x netns $P-br
  ip -n $P-br link set bp$x master br0; ip -n $P-br link set bp$x up
  ip -n $P-b$x addr add 10.203.0.$x/24 dev eth1; ip -n $P-b$x link set eth1 up
done
sleep 2
for p in u:201 r:205 j:204 v:202 b:203; do
  ip netns exec $P-${p%:*}1 ping -c 3 -i 0.2 -W 2 10.${p#*:}.0.2 >/dev/null \
    || { echo "path ${p%:*}: no connectivity"; tail -5 $D/agent1.log; exit 1; }
done

declare -A tput rtt cpu
# utime+stime (clock ticks) of the given PIDs
ticks() { local t=0 p; for p in $1; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
run() { # ns-prefix subnet
  local n=$1 net=$2
  ip netns exec $P-${n}2 iperf3 -s -1 -D -p 5209 --logfile $D/srv.log
  for i in $(seq 100); do ip netns exec $P-${n}2 ss -Hltn 'sport = :5209' | grep -q . && break; sleep 0.05; done
  local bps t0 t1 js
  t0=$(ticks "${apids[$n]:-}")
  js=$(ip netns exec $P-${n}1 iperf3 -c 10.$net.0.2 -p 5209 -t "$SECS" -J)
  t1=$(ticks "${apids[$n]:-}")
  bps=$(echo "$js" | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])') \
    || { echo "iperf3 on path $n failed:"; echo "$js" | tail -5; cat $D/srv.log | tail -5; exit 1; }
  if [ -n "${apids[$n]:-}" ]; then
    # both agents' CPU seconds per GB moved (includes idle polling between frames)
    cpu[$n]+="$(python3 -c "print(round(($t1-$t0)/$(getconf CLK_TCK)/($bps*$SECS/8/1e9),2))") "
  fi
  local r
  r=$(ip netns exec $P-${n}1 ping -c 20 -i 0.05 -q 10.$net.0.2 | awk -F/ '/rtt/{print $5}')
  tput[$n]+="$(python3 -c "print(round($bps/1e6))") "; rtt[$n]+="$r "
}
for r in $(seq "$ROUNDS"); do run u 201; run r 205; run j 204; run v 202; run b 203; done
med() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(statistics.median(v))" $1; }
echo "path      TCP Mbit/s (median of $ROUNDS x ${SECS}s; all runs)     ping RTT avg ms (median; all)   agents CPU s/GB (median; all)"
for n in u r j v b; do
  case $n in u) name=uswitch;; r) name=usw-rw;; j) name=usw-9000;; v) name=veth;; b) name=linuxbr;; esac
  c=-; [ -n "${cpu[$n]:-}" ] && c="$(med "${cpu[$n]}") (${cpu[$n]% })"
  printf '%-9s %-8s (%s)   %-6s (%s)   %s\n' $name "$(med "${tput[$n]}")" "${tput[$n]% }" "$(med "${rtt[$n]}")" "${rtt[$n]% }" "$c"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
