#!/usr/bin/env bash
# Installs what building and testing uswitch needs on Debian 12 (run as root). Idempotent:
# packages already installed are skipped, `apt-get update` runs at most once, cnitool-lite is
# built only when it is not on PATH.
set -euo pipefail

PKGS=(dpdk dpdk-dev containernetworking-plugins golang-go golang-github-appc-cni-dev
      iproute2 pkg-config iputils-ping socat coreutils util-linux procps
      iperf3 ethtool bc python3)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# QEMU guests of the vhost-user e2e tests (tests/tests/vhost_qemu.rs): QEMU, a packaged guest
# kernel (/boot/vmlinuz-* + /lib/modules), static busybox and cpio for the test's initramfs.
# Without recommends: qemu-system-x86's pull in GUI and firmware packages the tests do not use.
QEMU_PKGS=(qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio)
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages ${missing[*]}; run as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
else
  echo "install-deps: all packages present"
fi
qmissing=()
for p in "${QEMU_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    qmissing+=("$p")
  fi
done
if ((${#qmissing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages ${qmissing[*]}; run as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${qmissing[*]}"
  ((${#missing[@]})) || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${qmissing[@]}" >/dev/null
fi

# OVS-DPDK, the loopback benchmark's third switch (benches/loopback.sh runs it from its own
# directory with its own ovsdb-server). Installed WITHOUT starting the packaged service: a
# policy-rc.d that answers 101 ("action forbidden") is in place during the install and removed
# afterwards (one that was already there is kept as it was).
OVS_PKGS=(openvswitch-switch-dpdk)
omissing=()
for p in "${OVS_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    omissing+=("$p")
  fi
done
if ((${#omissing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages ${omissing[*]}; run as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${omissing[*]} (service not started)"
  ((${#missing[@]} + ${#qmissing[@]})) || apt-get update -qq
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# written by uswitch install-deps.sh while installing OVS-DPDK\nexit 101\n' \
      > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${omissing[@]}" >/dev/null || rc=$?
  [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || { echo "install-deps: installing ${omissing[*]} failed ($rc)" >&2; exit "$rc"; }
fi
[ -x /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk ] \
  || echo "install-deps: NOTE: /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk missing; loopback OVS rows are skipped" >&2

if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { echo "install-deps: cargo not found (install rustup)" >&2; exit 1; }
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" 2>/dev/null || true
done

if ! command -v cnitool-lite >/dev/null; then
  root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))
  shared=${USWITCH_SHARED:-$root/../shared}
  if [ -x "$shared/tools/cnitool-lite/build.sh" ]; then
    "$shared/tools/cnitool-lite/build.sh" /usr/local/bin
  else
    echo "install-deps: cnitool-lite not on PATH and $shared/tools/cnitool-lite/build.sh not found (CNI e2e tests need it)" >&2
  fi
fi
command -v dpdk-testpmd >/dev/null || { echo "install-deps: dpdk-testpmd missing after install" >&2; exit 1; }
echo "install-deps: ok"
