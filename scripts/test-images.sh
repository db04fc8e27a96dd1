#!/usr/bin/env bash
# Builds what the OCI test suites run, once per machine, before the tests start (so two
# test files never build it at once): a debootstrap rootfs in the cache dir, imported as
# localhost/agentcell/cell:test into each engine in AGENTCELL_TEST_BACKENDS.
# Expects a built tree (dist/agentcell.cjs). See test/backends-under-test.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
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
for engine in "${engines[@]}"; do
  if ! "$engine" image inspect "$tag" >/dev/null 2>&1; then
    AGENTCELL_HOME=$home node dist/agentcell.cjs image build --from "$rootfs" --engine "$engine" --tag "$tag"
  fi
done
