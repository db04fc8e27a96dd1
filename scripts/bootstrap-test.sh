#!/usr/bin/env bash
# The packages only the test suite needs, on top of what scripts/bootstrap.sh installs for
# running cells. scripts/test.sh (`npm test`) runs this first; safe to run again (a no-op
# once everything is there).
set -euo pipefail
cd "$(dirname "$0")/.."

# python3, perl, procps, util-linux (script, setsid): the tests drive real terminals and processes.
# curl and openssl: the egress tests make a test CA and fetch through the gateway.
# openssh-server: SSH through the gateway to a real sshd.
PACKAGES=(python3 perl procps util-linux curl openssl openssh-server)
# tmux: the sessions tests drive `session attach` from a real terminal (send-keys, capture-pane).
PACKAGES+=(tmux)
# podman, docker.io, runc, runsc (gVisor), uidmap: the OCI backends' tests; debootstrap
# builds their test image (no registry is needed).
PACKAGES+=(podman docker.io runc runsc uidmap debootstrap)
# podman's network stack as a full install has it (containers-common recommends netavark; with
# --no-install-recommends apt picks the CNI plugins instead). podman settles on a backend at its
# first use, so this is installed with podman, before test.sh's first podman command.
PACKAGES+=(netavark aardvark-dns)
# The completion tests load `agentcell completion zsh|fish` in a real zsh and fish (bash is always there).
PACKAGES+=(zsh fish)
# The dashboard's browser tests (test/ui.test.ts) drive Debian's Chromium through playwright-core.
PACKAGES+=(chromium)
# The start-up bench's baseline, srt (@anthropic-ai/sandbox-runtime, installed by the bench), refuses to run without them.
PACKAGES+=(socat ripgrep)
bash scripts/apt-install.sh "${PACKAGES[@]}"
