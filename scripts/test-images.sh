#!/usr/bin/env bash
# Builds what the OCI test suites run, once per machine, before the tests start (so two
# test files never build it at once): a debootstrap rootfs in the cache dir, imported as
# localhost/agentcell/cell:test into each engine in AGENTCELL_TEST_BACKENDS. With a user
# name, imports into that user's rootless podman instead (the unprivileged pass).
# Run as root, from a built tree (dist/agentcell.cjs). See test/backends-under-test.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
user=${1:-}
rootfs=${AGENTCELL_TEST_ROOTFS:-/var/cache/agentcell-test/rootfs-bookworm}
tag=localhost/agentcell/cell:test
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
engines=()
case ",$AGENTCELL_TEST_BACKENDS," in *,podman,*) engines+=(podman) ;; esac
case ",$AGENTCELL_TEST_BACKENDS," in *,docker,* | *,gvisor,*) engines+=(docker) ;; esac
[ ${#engines[@]} -eq 0 ] && exit 0
if [ ! -d "$rootfs/usr" ]; then
  mkdir -p "$(dirname "$rootfs")"
  AGENTCELL_HOME=$home node dist/agentcell.cjs image build --rootfs "$rootfs"
fi
if [ -n "$user" ]; then
  # The rootfs is root's: root reads it, the user's rootless podman imports the stream.
  as_user() { su "$user" -s /bin/bash -c "cd /tmp && XDG_DATA_HOME=\$HOME/.local/share $*"; }
  if ! as_user podman image inspect "$tag" >/dev/null 2>&1; then
    tar --numeric-owner -C "$rootfs" -c . | as_user podman import - "$tag" >/dev/null
  fi
  exit 0
fi
for engine in "${engines[@]}"; do
  if ! "$engine" image inspect "$tag" >/dev/null 2>&1; then
    AGENTCELL_HOME=$home node dist/agentcell.cjs image build --from "$rootfs" --engine "$engine" --tag "$tag"
  fi
done
