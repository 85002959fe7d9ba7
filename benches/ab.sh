#!/usr/bin/env bash
# A/B comparison of two uswitchd binaries on one loopback case, for a noisy machine.
#
# Runs `benches/loopback.sh --cases CASE` alternately with OLD and NEW (A B A B ...), ROUNDS
# times each, and prints every run plus the median Mpps/dir and switch busy cycles/packet per
# binary and the ratio NEW/OLD. Cycles are compared "incl. stalls" (preempted iterations left
# in) so that a binary without stall accounting compares fairly; the stall-free median is shown
# too. Alternating back to back spreads the machine's load changes over
# both; medians ignore the odd disturbed run. uswitchctl and uswitch-bench come from the
# release build of this checkout (USWITCH_BIN, default target/release) for both sides.
#
# Usage: benches/ab.sh [--rounds N] [--case REGEX] [--window S] [--warmup S] OLD_USWITCHD NEW_USWITCHD
#   --rounds N    runs per binary (default 5)
#   --case RE     loopback case (default '^uswitch-bridge/bench/2p/b32$')
#   --window S / --warmup S   passed to loopback.sh (default 3 / 1)
# Example: cp target/release/uswitchd /tmp/uswitchd.old; (change, rebuild);
#          benches/ab.sh /tmp/uswitchd.old target/release/uswitchd
set -u -o pipefail

ROUNDS=5
CASE='^uswitch-bridge/bench/2p/b32$'
WINDOW=3
WARMUP=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --case) CASE=$2; shift ;;
        --window) WINDOW=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        -*) echo "ab.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
if [ $# -ne 2 ]; then
    echo "usage: benches/ab.sh [--rounds N] [--case RE] [--window S] [--warmup S] OLD_USWITCHD NEW_USWITCHD" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${USWITCH_BIN:-$ROOT/target/release}
for f in "$1" "$2" "$BIN/uswitchctl" "$BIN/uswitch-bench"; do
    [ -x "$f" ] || { echo "ab.sh: $f is not an executable" >&2; exit 2; }
done
case $ROUNDS in ''|*[!0-9]*|0) echo "ab.sh: --rounds wants a positive number" >&2; exit 2 ;; esac

WORK=$(mktemp -d /tmp/uswitch-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for side in old new; do
    mkdir -p "$WORK/$side"
    bin=$1; [ $side = new ] && bin=$2
    ln -s "$(readlink -f "$bin")" "$WORK/$side/uswitchd"
    ln -s "$BIN/uswitchctl" "$WORK/$side/uswitchctl"
    ln -s "$BIN/uswitch-bench" "$WORK/$side/uswitch-bench"
done

: > "$WORK/runs.tsv"
for r in $(seq 1 "$ROUNDS"); do
    for side in old new; do
        out=$WORK/$side.$r.md
        USWITCH_BIN=$WORK/$side "$ROOT/benches/loopback.sh" --cases "$CASE" --window "$WINDOW" \
            --warmup "$WARMUP" --out "$out" > /dev/null 2> "$WORK/$side.$r.err"
        # memif row: | switch | reflector | ports | burst | Mpps/dir | aggregate | cycles/pkt | ... | note |
        # vhost row: | switch | transport | burst | Mpps/dir | aggregate | cycles/pkt | ... | note |
        row=$(grep -m1 '^| uswitch' "$out" 2>/dev/null || true)
        case $CASE in
            */vhost/*) mc=5; cc=7 ;;
            *) mc=6; cc=8 ;;
        esac
        mpps=$(echo "$row" | awk -F'|' -v c=$mc '{gsub(/ /,"",$c); print $c}')
        cyc=$(echo "$row" | awk -F'|' -v c=$cc '{gsub(/ /,"",$c); print $c}')
        note=$(echo "$row" | awk -F'|' '{gsub(/^ +| +$/,"",$(NF-1)); print $(NF-1)}')
        printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$side" "${mpps:--}" "${cyc:--}" "$note" | tee -a "$WORK/runs.tsv" >&2
    done
done

python3 - "$WORK/runs.tsv" "$CASE" "$(cat /proc/loadavg)" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def num(s):
    try: return float(s)
    except ValueError: return None
import re
def incl(r):
    # A binary with stall accounting notes "..., C cyc/pkt incl. stalls"; one without it
    # reports stalls inside its busy cycles already.
    m = re.search(r"([0-9.]+) cyc/pkt incl. stalls", r[4] if len(r) > 4 else "")
    return float(m.group(1)) if m else num(r[3])
med = {}
for side in ("old", "new"):
    mine = [r for r in rows if r[1] == side]
    m = [num(r[2]) for r in mine if num(r[2])]
    c = [num(r[3]) for r in mine if num(r[3])]
    ci = [incl(r) for r in mine if incl(r)]
    md = lambda v: statistics.median(v) if v else None
    med[side] = (md(m), md(c), md(ci), len(m))
print(f"case {sys.argv[2]}; load average at the end: {sys.argv[3]}")
print("| binary | runs | median Mpps/dir | median busy cycles/pkt | median incl. stalls |")
print("|---|---:|---:|---:|---:|")
for side in ("old", "new"):
    m, c, ci, n = med[side]
    f = lambda x: f"{x:.3f}" if x is not None else "-"
    print(f"| {side} | {n} | {f(m)} | {f(c)} | {f(ci)} |")
(om, oc, oci, _), (nm, nc, nci, _) = med["old"], med["new"]
if om and nm and oci and nci:
    print(f"new/old: Mpps {nm / om:.2f}x, cycles/pkt incl. stalls {nci / oci:.2f}x"
          + (f", without stalls {nc / oc:.2f}x" if oc and nc else ""))
EOF
