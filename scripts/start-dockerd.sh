#!/usr/bin/env bash
# Starts dockerd for the test suite when no daemon answers on the default socket, with
# gVisor's runsc registered as the runtime `runsc`. The daemon keeps running after the
# tests (one per machine); its log is /var/log/agentcell-dockerd.log. Root only.
set -euo pipefail
config=/etc/agentcell/dockerd.json
write_config() {
  mkdir -p "$(dirname "$config")"
# --network=none: gVisor's own netstack stays off (cells have no network but the gateway's
# socket); --host-uds=open: a cell may connect to that bound-in socket, and create none;
# --oci-seccomp: runsc applies the container's seccomp profile (agentcell's) inside the sandbox,
# which it otherwise ignores.
cat >"$config" <<'JSON'
{ "runtimes": { "runsc": { "path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--host-uds=open", "--oci-seccomp"] } } }
JSON
}
if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  # A daemon this script started before runsc got --oci-seccomp: runtimes reload on SIGHUP.
  if [ "$(id -u)" -eq 0 ] && pgrep -x dockerd >/dev/null && pgrep -xa dockerd | grep -q -- "--config-file $config" &&
    ! docker info --format '{{json .Runtimes}}' | grep -q -- --oci-seccomp; then
    write_config
    kill -HUP "$(pgrep -x dockerd)"
    sleep 1
  fi
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "start-dockerd: no docker daemon is running and only root can start one" >&2
  exit 1
fi
write_config
# A daemon killed hard leaves its pid file behind, and a new one refuses to start.
pidfile=/var/run/docker.pid
if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
setsid dockerd --config-file "$config" >>/var/log/agentcell-dockerd.log 2>&1 </dev/null &
for _ in $(seq 1 100); do
  if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then exit 0; fi
  sleep 0.2
done
echo "start-dockerd: dockerd did not answer within 20 s; see /var/log/agentcell-dockerd.log" >&2
exit 1
