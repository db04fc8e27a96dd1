#!/usr/bin/env bash
# What running a cell needs on a fresh Debian or Ubuntu machine: the system packages
# agentcell calls, then the npm dependencies, then a build. Safe to run again. The test
# suite's extra packages are installed by scripts/bootstrap-test.sh, which `npm test`
# (scripts/test.sh) runs first.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# bubblewrap: the default backend. git: workspaces are repos (and branch cells clone them).
# util-linux (unshare, mount, setpriv, mountpoint) and attr (getfattr) make and read overlay
# workspaces; fuse-overlayfs is the overlay where the kernel refuses overlayfs in a user namespace.
# openssh-client: ssh-keygen makes each cell's SSH key (`agentcell pubkey`).
# ca-certificates: npm ci fetches over HTTPS.
PACKAGES=(bubblewrap git util-linux attr fuse-overlayfs openssh-client ca-certificates)
if ! command -v node >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi
bash scripts/apt-install.sh "${PACKAGES[@]}"

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
