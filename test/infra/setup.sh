#!/usr/bin/env bash
# Installs (Debian packages) and starts, on loopback only, the real servers the tests use:
#   - a Docker engine (dockerd, overlay2, --iptables=false) and the locally built test image
#     (no image registry is reachable: the image is imported from a rootfs, see test/fixtures/build-test-image.sh);
#   - an OpenSSH server on 127.0.0.1:2222 with a generated client key (root);
#   - munge and a one-node Slurm (slurmctld + slurmd) with 8 CPUs and 4 fake GPUs (--gres=gpu:N works).
# Idempotent: a daemon that already answers is left alone. State, keys and logs live in $W.
# Adapted from the team's shared infra notes; this copy is the one the project owns.
set -euo pipefail
W=${W:-/tmp/tao-infer-infra}; mkdir -p "$W"/{log,ssh,slurm/state,slurm/spool}
HERE=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s.%N); ts(){ printf '%-28s %6.1fs\n' "$1" "$(echo "$(date +%s.%N)-$t0" | bc)"; }
export DEBIAN_FRONTEND=noninteractive
need=""
for p in docker.io busybox-static openssh-server openssh-client slurm-wlm munge bc openssl; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $need > "$W/log/apt.log" 2>&1
fi
ts apt-install

# ---- docker engine ----
if ! docker info >/dev/null 2>&1; then
  nohup dockerd --storage-driver=overlay2 --iptables=false --data-root "$W/docker" > "$W/log/dockerd.log" 2>&1 &
  echo $! > "$W/dockerd.pid"
  for i in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.25; done
fi
docker info >/dev/null
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
if ! [ -f "$S/sshd.pid" ] || ! kill -0 "$(cat "$S/sshd.pid")" 2>/dev/null; then
  /usr/sbin/sshd -f "$S/sshd_config" -E "$W/log/sshd.log"
fi
for i in $(seq 1 40); do ssh -p 2222 -i "$S/client_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR root@127.0.0.1 true 2>/dev/null && break; sleep 0.25; done
ts sshd-up

# ---- munge + slurm (single node, 8 fake CPUs, 4 fake GPUs) ----
mkdir -p /run/munge; chown munge:munge /run/munge
[ -f /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
[ -S /run/munge/munge.socket.2 ] || runuser -u munge -- /usr/sbin/munged
H=$(hostname -s); L="$W/slurm"
for i in 0 1 2 3; do [ -e "$L/fakegpu$i" ] || mknod "$L/fakegpu$i" c 1 3; done
if ! sinfo -h >/dev/null 2>&1; then
cat > /etc/slurm/slurm.conf <<EOC
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
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=300
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$H NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOC
cat > /etc/slurm/gres.conf <<EOC
AutoDetect=off
NodeName=$H Name=gpu File=$L/fakegpu[0-3]
EOC
nohup slurmctld -D > "$W/log/slurmctld.log" 2>&1 & echo $! > "$W/slurmctld.pid"
nohup slurmd -D > "$W/log/slurmd.log" 2>&1 & echo $! > "$W/slurmd.pid"
fi
for i in $(seq 1 120); do sinfo -h -o '%T' 2>/dev/null | grep -qx idle && break; sleep 0.25; done
sinfo -N -o '%N %T %c %G'
ts slurm-up
