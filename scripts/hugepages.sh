#!/usr/bin/env bash
# Reserves 1024 x 2 MiB hugepages and mounts hugetlbfs on /dev/hugepages. Failure is not fatal:
# uswitch falls back to memfd with 4K pages and the test harness runs testpmd with --no-huge.
set -uo pipefail
want=${HUGEPAGES:-1024}
cur=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if [ "$cur" -lt "$want" ]; then
  echo "$want" > /proc/sys/vm/nr_hugepages 2>/dev/null || echo "hugepages: cannot set nr_hugepages (not root or no support)"
fi
mkdir -p /dev/hugepages 2>/dev/null || true
if ! mountpoint -q /dev/hugepages; then
  mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || echo "hugepages: cannot mount hugetlbfs on /dev/hugepages"
fi
free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
total=$(awk '/HugePages_Total/ {print $2}' /proc/meminfo)
if mountpoint -q /dev/hugepages && [ "${free:-0}" -gt 0 ]; then
  echo "hugepages: ${free}/${total} free 2 MiB pages, hugetlbfs on /dev/hugepages"
else
  echo "hugepages: none usable (free=${free:-0}); continuing without (memfd 4K pages / testpmd --no-huge)"
fi
exit 0
