#!/usr/bin/env bash
# Installs (Debian packages) and starts, on loopback only, the real servers the tests use:
#   - a Docker engine (dockerd, overlay2, --iptables=false) and the locally built test image
#     (no image registry is reachable: the image is imported from a rootfs, see test/fixtures/build-test-image.sh);
#   - an OpenSSH server on 127.0.0.1:2222 with a generated client key (root);
#   - the docker-registry and htpasswd programs for the image-pull tests (each test file starts its own registry);
#   - munge and a one-node Slurm (slurmctld + slurmd) with 64 CPUs, 256 GB and 4 fake typed GPUs (gpu:h100; both
#     --gres=gpu:N and --gres=gpu:h100:N work) that schedules and enforces memory like GPU clusters do
#     (CR_Core_Memory, a small DefMemPerCPU, over-memory kill). Its node is named tao-node-x, a name that does not
#     resolve, reached at NodeAddr=127.0.0.1, as on clusters whose node names are only known to Slurm.
# Idempotent: a daemon that already answers is left alone (Slurm is restarted only when slurm.conf changed).
# State, keys and logs live in $W.
# Adapted from the team's shared infra notes; this copy is the one the project owns.
set -euo pipefail
W=${W:-/tmp/tao-infer-infra}; mkdir -p "$W"/{log,ssh,slurm/state,slurm/spool}
HERE=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s.%N); ts(){ printf '%-28s %6.1fs\n' "$1" "$(echo "$(date +%s.%N)-$t0" | bc)"; }
# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds or SECONDS of wall-clock time have passed.
wait_for(){ local what=$1 secs=$2; shift 2; local end=$(( $(date +%s) + secs ))
  until "$@"; do [ "$(date +%s)" -lt "$end" ] || { echo "setup: $what not up after ${secs}s" >&2; return 1; }; sleep 0.25; done; }
# fail MESSAGE LOG...: says what failed, shows the end of each log, exits non-zero (never waits on).
fail(){ echo "setup: $1" >&2; shift; for f in "$@"; do [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 30 "$f" >&2; }; done; exit 1; }
# stop_pidfile FILE NAME: ends the process in FILE only if it is still NAME (a stale file may name a reused PID).
stop_pidfile(){ local pid; pid=$(cat "$1" 2>/dev/null) || return 0
  [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ] && kill "$pid" 2>/dev/null; rm -f "$1"; }
export DEBIAN_FRONTEND=noninteractive
need=""
# docker-registry (the CNCF distribution server) and apache2-utils (htpasswd): the image-pull tests start their own
# registry on a free loopback port with htpasswd auth (test/helpers/registry.ts); nothing is started here for them.
for p in docker.io busybox-static openssh-server openssh-client slurm-wlm munge bc openssl procps docker-registry apache2-utils; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $need > "$W/log/apt.log" 2>&1
fi
ts apt-install

# ---- docker engine ----
docker_ok(){ timeout 10 docker info >/dev/null 2>&1; }
if ! docker_ok; then
  # /var/run/docker.pid left by a dockerd of an earlier machine session would stop a new one from starting.
  pgrep -x dockerd >/dev/null || rm -f /var/run/docker.pid
  nohup dockerd --storage-driver=overlay2 --iptables=false --data-root "$W/docker" > "$W/log/dockerd.log" 2>&1 &
  echo $! > "$W/dockerd.pid"
  wait_for "dockerd" 60 docker_ok || fail "dockerd did not start" "$W/log/dockerd.log"
fi
ts dockerd-up
bash "$HERE/../fixtures/build-test-image.sh"
ts test-image

# ---- sshd on 127.0.0.1:2222, key auth for root ----
S="$W/ssh"; mkdir -p /run/sshd
[ -f "$S/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$S/host_key"
[ -f "$S/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$S/client_key"
cp "$S/client_key.pub" "$S/authorized_keys"; chmod 644 "$S/authorized_keys"
# known_hosts line for the test server, so tests can check host keys for real.
echo "[127.0.0.1]:2222 $(cut -d' ' -f1,2 "$S/host_key.pub")" > "$S/known_hosts"
cat > "$S/sshd_config" <<EOC
Port 2222
ListenAddress 127.0.0.1
HostKey $S/host_key
PidFile $S/sshd.pid
AuthorizedKeysFile $S/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
MaxStartups 100:30:200
MaxSessions 50
EOC
ssh_ok(){ timeout 10 ssh -p 2222 -i "$S/client_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=3 -o LogLevel=ERROR root@127.0.0.1 true 2>/dev/null; }
# Health, not a PID file, decides: a PID file left by an earlier machine session may name a reused PID.
if ! ssh_ok; then
  rm -f "$S/sshd.pid"
  /usr/sbin/sshd -f "$S/sshd_config" -E "$W/log/sshd.log"
  wait_for "sshd on 127.0.0.1:2222" 20 ssh_ok || fail "sshd did not answer" "$W/log/sshd.log"
fi
ts sshd-up

# ---- munge + slurm (single node tao-node-x at 127.0.0.1, 64 CPUs, 256 GB, 4 fake h100 GPUs) ----
mkdir -p /run/munge; chown munge:munge /run/munge
[ -f /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
munge_ok(){ timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }
# A socket left behind by a munged that is gone (the machine's processes end between sessions) is stale:
# --force lets munged replace it.
if ! munge_ok; then
  runuser -u munge -- /usr/sbin/munged --force
  wait_for "munged" 10 munge_ok || fail "munged does not answer" /var/log/munge/munged.log
fi
H=$(hostname -s); L="$W/slurm"
# The controller runs on this machine under its own name (SlurmctldHost), which must resolve.
getent hosts "$H" >/dev/null || echo "127.0.0.1 $H" >> /etc/hosts
# The compute node: NodeName is only Slurm's name for it and need not resolve (slurm.conf(5) NodeName/NodeAddr/
# NodeHostname: "NodeAddr: Name that a node should be referred to in establishing a communications path";
# "NodeHostname: ... if NodeHostname is not specified, it will be set to NodeName"). Real clusters name nodes
# e.g. dgx-a100-042 while only an IP or another DNS name reaches them; tao-infer must connect to NodeAddr, read
# with `scontrol show node -o <node>`. tao-node-x is therefore never put in /etc/hosts. slurmd is started with
# -N so it takes that name (slurmd(8) -N <nodename>).
N=tao-node-x
if getent hosts "$N" >/dev/null; then fail "$N resolves on this machine; the test cluster needs a node name that does not"; fi
for i in 0 1 2 3; do [ -e "$L/fakegpu$i" ] || mknod "$L/fakegpu$i" c 1 3; done
sinfo_idle(){ timeout 5 sinfo -h -o '%T' 2>/dev/null | grep -qx idle; }
slurmctld_ok(){ timeout 5 sinfo -h >/dev/null 2>&1; }
# Memory is scheduled and enforced as on GPU clusters: SelectTypeParameters=CR_Core_Memory gives a job that asks
# for no memory DefMemPerCPU x its CPUs (slurm.conf(5)), and JobAcctGatherParams=OverMemoryKill (sampled every
# second by jobacct_gather/linux) kills a step whose processes use more than that, as cgroup limits do on real
# clusters: a service started without --mem is killed while loading. The node declares more CPUs and memory than
# this machine has (SlurmdParameters=config_overrides) so tao-infer's per-arch defaults (e.g. --mem=64G
# --cpus-per-task=8) fit, as on a GPU node; DefMemPerCPU=256 (MB) leaves room for small test jobs without --mem.
# The GPUs are typed (gres.conf(5) "Type": Gres=gpu:h100:4 in slurm.conf, Type=h100 in gres.conf), as on clusters
# with several GPU models: --gres=gpu:h100:N is scheduled, --gres=gpu:a100:N is refused by sbatch.
cat > "$L/slurm.conf.want" <<EOC
ClusterName=taoinfer
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$L/state
SlurmdSpoolDir=$L/spool
SlurmctldPidFile=$L/slurmctld.pid
SlurmdPidFile=$L/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
ReturnToService=2
MinJobAge=300
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$N NodeAddr=127.0.0.1 NodeHostname=$H CPUs=64 RealMemory=262144 Gres=gpu:h100:4 State=UNKNOWN
PartitionName=debug Nodes=$N Default=YES MaxTime=INFINITE State=UP
EOC
cat > "$L/gres.conf.want" <<EOC
AutoDetect=off
NodeName=$N Name=gpu Type=h100 File=$L/fakegpu[0-3]
EOC
if slurmctld_ok && ! { cmp -s "$L/slurm.conf.want" /etc/slurm/slurm.conf && cmp -s "$L/gres.conf.want" /etc/slurm/gres.conf; }; then
  # A changed configuration (e.g. memory enforcement, the node's name or GPU type) needs a restart of both daemons.
  echo "setup: slurm.conf or gres.conf changed, restarting Slurm" >&2
  scontrol shutdown >/dev/null 2>&1 || true
  end=$(( $(date +%s) + 30 )); while slurmctld_ok && [ "$(date +%s)" -lt "$end" ]; do sleep 0.5; done
fi
if ! slurmctld_ok; then
  # Leftovers of an earlier run (daemons without munge, PID files) are ended before a fresh start, and
  # slurmctld -c drops the saved state of jobs whose processes are gone.
  stop_pidfile "$W/slurmctld.pid" slurmctld; stop_pidfile "$W/slurmd.pid" slurmd
  pkill -x slurmctld 2>/dev/null || true; pkill -x slurmd 2>/dev/null || true; sleep 0.5
cp "$L/slurm.conf.want" /etc/slurm/slurm.conf
cp "$L/gres.conf.want" /etc/slurm/gres.conf
nohup slurmctld -D -c > "$W/log/slurmctld.log" 2>&1 & echo $! > "$W/slurmctld.pid"
nohup slurmd -D -N "$N" > "$W/log/slurmd.log" 2>&1 & echo $! > "$W/slurmd.pid"
fi
# A node left DOWN/DRAIN by an earlier run comes back with ReturnToService=2; resume it if not.
wait_for "slurmctld" 30 slurmctld_ok || fail "slurmctld does not answer" "$W/log/slurmctld.log"
sinfo_idle || scontrol update NodeName="$N" State=RESUME >/dev/null 2>&1 || true
wait_for "slurm node idle" 60 sinfo_idle || { sinfo -N -o '%N %T %E' >&2 || true; fail "slurm node not idle" "$W/log/slurmctld.log" "$W/log/slurmd.log"; }
sinfo -N -o '%N %T %c %G'
ts slurm-up
