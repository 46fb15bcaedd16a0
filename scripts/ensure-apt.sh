#!/usr/bin/env bash
# Install the given Debian packages, those not installed yet; nothing when all are. Idempotent.
#   ensure-apt.sh [--or "another way to provide them"] PACKAGE...
# Without root it installs nothing: it names the missing packages (and --or's alternative), exit 1.
set -euo pipefail
alternative=""
if [ "${1:-}" = "--or" ]; then
  alternative=" or $2"
  shift 2
fi
missing=()
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "${missing[*]} missing: run 'sudo apt-get install ${missing[*]}'$alternative" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt may be running (another checkout installing the same): wait for its lock.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null
