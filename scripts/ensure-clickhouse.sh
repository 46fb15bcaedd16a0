#!/usr/bin/env bash
# Make Debian's clickhouse-server available for the tests. Idempotent.
set -euo pipefail
if command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/bin/clickhouse ]; then
  exit 0
fi
if [ -n "${LAKESLICE_TEST_CLICKHOUSE_URL:-}" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "clickhouse-server is missing: run 'sudo apt-get install clickhouse-server clickhouse-client'" \
       "or set LAKESLICE_TEST_CLICKHOUSE_URL=clickhouse://host:port/db to use an existing server" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -q --no-install-recommends clickhouse-server clickhouse-client >/dev/null
command -v clickhouse-server >/dev/null
