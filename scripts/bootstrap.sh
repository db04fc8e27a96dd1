#!/usr/bin/env bash
# Everything agentcell and its tests need on a fresh Debian or Ubuntu machine:
# system packages, then the npm dependencies, then a build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# bubblewrap: the default backend. git: workspaces are repos. python3, perl,
# procps, util-linux (script, setsid): the tests drive real terminals and processes.
# util-linux (unshare, mount) and attr (getfattr) make and read overlay workspaces.
# curl and openssl: the egress tests make a test CA and fetch through the gateway.
# fuse-overlayfs: the overlay workspace where the kernel refuses overlayfs in a user namespace.
# openssh-client and openssh-server: cell keys (ssh-keygen) and SSH through the gateway to a real sshd.
# podman, docker.io, runc, runsc (gVisor), uidmap: the OCI backends' tests; debootstrap
# builds their test image (no registry is needed).
PACKAGES=(bubblewrap git python3 perl procps util-linux attr curl openssl ca-certificates fuse-overlayfs)
PACKAGES+=(openssh-client openssh-server)
# tmux: the sessions tests drive `session attach` from a real terminal (send-keys, capture-pane).
PACKAGES+=(tmux)
PACKAGES+=(podman docker.io runc runsc uidmap debootstrap)
# podman's network stack as a full install has it (containers-common recommends netavark; with
# --no-install-recommends apt picks the CNI plugins instead). podman settles on a backend at its
# first use, so this comes before any podman command; agentcell itself works with either.
PACKAGES+=(netavark aardvark-dns)
# The completion tests load `agentcell completion zsh|fish` in a real zsh and fish (bash is always there).
PACKAGES+=(zsh fish)
# The dashboard's browser tests (test/ui.test.ts) drive Debian's Chromium through playwright-core.
PACKAGES+=(chromium)

missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# fuse3 makes /dev/fuse usable by every user through udev; machines without udev (containers, some
# VMs) leave it root-only, and then fuse-overlayfs works for root alone.
if [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then $SUDO chmod 0666 /dev/fuse; fi

# A root caller's bwrap cell runs as root's subordinate uid, not host uid 0 (src/backends/uid-shift.ts):
# give root 65536 ids in /etc/subuid and /etc/subgid, after every range already there.
for f in /etc/subuid /etc/subgid; do
  if ! grep -qE '^(root|0):' "$f" 2>/dev/null; then
    start=$(awk -F: 'BEGIN { m = 100000 } NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$f" 2>/dev/null || echo 100000)
    echo "root:$start:65536" | $SUDO tee -a "$f" >/dev/null
  fi
done

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "bootstrap: agentcell needs Node.js >= 20, this machine has $(node --version)." >&2
  echo "           Install Node 20 or newer (your distribution's nodejs package, or nvm), then run this again." >&2
  exit 3
fi

npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
echo "bootstrap: ready ($(bwrap --version), node $(node --version))" >&2
