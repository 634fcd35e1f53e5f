#!/usr/bin/env bash
# Stops the daemons test/infra/setup.sh started, by PID only.
W=${W:-/tmp/tao-infer-infra}
stop(){ local p; p=$(cat "$1" 2>/dev/null) || return 0; kill "$p" 2>/dev/null || return 0; for i in $(seq 1 40); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.25; done; kill -9 "$p" 2>/dev/null; }
docker ps -aq --filter label=tao-infer.managed-by 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1
stop "$W/slurmd.pid"; stop "$W/slurmctld.pid"; stop /run/munge/munged.pid; stop "$W/ssh/sshd.pid"; stop "$W/dockerd.pid"
