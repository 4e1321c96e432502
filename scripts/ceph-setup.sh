#!/usr/bin/env bash
# Installs the Debian packages the twin's `--ceph real` backend needs (a real
# Ceph pacific cluster plus a real Prometheus server, all on 127.0.0.1).
# Idempotent: does nothing when every binary is already on PATH.
# Exit codes: 0 ready, 2 cannot install (message says why).
set -euo pipefail

PKGS=(ceph-mon ceph-mgr ceph-osd ceph-common ceph-mgr-modules-core prometheus)
# One binary per package, so a half-finished install is noticed.
BINS=(ceph-mon ceph-mgr ceph-osd ceph ceph-authtool monmaptool rados prometheus)

missing() {
  local b out=()
  for b in "${BINS[@]}"; do
    # Debian installs the daemons in /usr/bin, but check sbin too for other layouts.
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || out+=("$b")
  done
  echo "${out[@]:-}"
}

gone=$(missing)
if [ -z "$gone" ]; then
  echo "ceph-setup: ceph and prometheus already installed ($(ceph --version 2>/dev/null | awk '{print $3}'))"
  exit 0
fi
echo "ceph-setup: missing: $gone"

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ceph-setup: cannot install: no apt-get on this machine. Install by hand: ${PKGS[*]} (Debian bookworm: ceph 16.2, prometheus 2.42)" >&2
  exit 2
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
  else
    echo "ceph-setup: cannot install: not root and no password-less sudo. Run as root: apt-get install --no-install-recommends ${PKGS[*]}" >&2
    exit 2
  fi
fi

# The lock timeout matters: other builds on the machine may be running apt.
APT=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
t0=$(date +%s)
"${APT[@]}" update -qq
"${APT[@]}" install -y -qq --no-install-recommends "${PKGS[@]}"

gone=$(missing)
if [ -n "$gone" ]; then
  echo "ceph-setup: install finished but still missing: $gone" >&2
  exit 2
fi
echo "ceph-setup: installed ${PKGS[*]} in $(( $(date +%s) - t0 )) s ($(ceph --version | awk '{print $3}'))"
