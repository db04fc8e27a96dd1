#!/usr/bin/env bash
# The whole test suite: the test-only packages, lint, then every test as the current user and, when that is
# root, again as an unprivileged user, because users run agentcell without root and
# root hides permission bugs. Expects a built tree (npm test builds first).
set -euo pipefail
cd "$(dirname "$0")/.."

# The test-only packages (podman, docker.io, runsc, debootstrap, tmux, zsh, fish, chromium…):
# scripts/bootstrap.sh installs only what running a cell needs. Before anything below uses them.
bash scripts/bootstrap-test.sh

npm run lint --silent

# The agent CLIs the adapter tests install from npm: once per machine, shared read-only by both passes.
export AGENTCELL_TOOLCHAIN_CACHE="${AGENTCELL_TOOLCHAIN_CACHE:-/var/tmp/agentcell-toolchains}"

# The backends each pass must test (test/backends-under-test.ts): a listed backend that is
# not ready fails its suites. Root tests all four; the unprivileged pass tests bwrap and
# rootless podman (the docker socket is root's).
if [ "$(id -u)" -eq 0 ]; then
  export AGENTCELL_TEST_BACKENDS=${AGENTCELL_TEST_BACKENDS:-bwrap,podman,docker,gvisor}
  case ",$AGENTCELL_TEST_BACKENDS," in *,docker,* | *,gvisor,*) scripts/start-dockerd.sh ;; esac
  scripts/test-images.sh
else
  export AGENTCELL_TEST_BACKENDS=${AGENTCELL_TEST_BACKENDS:-bwrap}
fi
echo "== tests as $(id -un) (uid $(id -u)), backends: $AGENTCELL_TEST_BACKENDS"
node --test --test-concurrency=2 dist/test/

if [ "$(id -u)" -eq 0 ]; then
  user=agentcell-test
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
  copy=$(mktemp -d /tmp/agentcell-unprivileged-XXXXXX)
  trap 'rm -rf "$copy"' EXIT
  cp -a package.json dist node_modules schemas "$copy"/
  chown -R "$user:" "$copy"
  backends=bwrap,podman
  AGENTCELL_TEST_BACKENDS=$backends scripts/test-images.sh "$user"
  echo "== tests as $user (uid $(id -u "$user")), backends: $backends"
  su "$user" -s /bin/bash -c "cd '$copy' && AGENTCELL_TEST_BACKENDS=$backends HOME=\$(getent passwd $user | cut -d: -f6) XDG_DATA_HOME=\$(getent passwd $user | cut -d: -f6)/.local/share AGENTCELL_TOOLCHAIN_CACHE='$AGENTCELL_TOOLCHAIN_CACHE' node --test --test-concurrency=2 dist/test/"
fi
