#!/usr/bin/env bash
# Make Debian's chromium available for the report's browser test. Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -n "${LAKESLICE_TEST_CHROMIUM:-}" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing: run 'sudo apt-get install chromium'" \
       "or set LAKESLICE_TEST_CHROMIUM=/path/to/chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt may be running (clickhouse-server, another checkout): wait for its lock.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
