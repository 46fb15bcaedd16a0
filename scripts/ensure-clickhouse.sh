#!/usr/bin/env bash
# Make Debian's clickhouse-server available for the tests. Idempotent.
set -euo pipefail
if command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/bin/clickhouse ]; then
  exit 0
fi
if [ -n "${LAKESLICE_TEST_CLICKHOUSE_URL:-}" ]; then
  exit 0
fi
bash "$(dirname "$0")/ensure-apt.sh" \
  --or "set LAKESLICE_TEST_CLICKHOUSE_URL=clickhouse://host:port/db to use an existing server" \
  clickhouse-server clickhouse-client
command -v clickhouse-server >/dev/null
