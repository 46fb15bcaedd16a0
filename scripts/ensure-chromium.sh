#!/usr/bin/env bash
# Make Debian's chromium available for the report's browser test. Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -n "${LAKESLICE_TEST_CHROMIUM:-}" ]; then
  exit 0
fi
bash "$(dirname "$0")/ensure-apt.sh" --or "set LAKESLICE_TEST_CHROMIUM=/path/to/chromium" chromium
command -v chromium >/dev/null
