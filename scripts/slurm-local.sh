#!/usr/bin/env bash
# A single-node Slurm on loopback, without systemd, for CI and for trying
# `eosflow sweep --slurm` on a workstation. Needs Debian's packages
# `slurmctld slurmd slurm-client munge` (`install` installs them) and root.
#
#   scripts/slurm-local.sh install      # apt-get install the packages
#   eval "$(scripts/slurm-local.sh start)"   # starts munge, slurmctld, slurmd; prints `export SLURM_CONF=…`
#   scripts/slurm-local.sh stop
#
# State lives in ${EOSFLOW_SLURM_DIR:-/tmp/eosflow-slurm} (config, logs,
# spool), started fresh (`slurmctld -c`) each time. Settings known to work in
# a container: proctrack/linuxproc and task/none (proctrack/cgroup fails
# silently here: tasks end COMPLETED with no output), batch_sched_delay=0.
set -euo pipefail

S=${EOSFLOW_SLURM_DIR:-/tmp/eosflow-slurm}
CONF=$S/slurm.conf

case "${1:-}" in
install)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
    ;;
start)
    "$0" stop >/dev/null 2>&1 || true
    rm -rf "$S"
    mkdir -p "$S/state" "$S/spool"
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$CONF" <<EOF
ClusterName=eosflow-local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=5
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged
    fi
    slurmctld -c -f "$CONF"
    slurmd -N localhost -f "$CONF"
    export SLURM_CONF=$CONF
    for _ in $(seq 1 60); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle'; then
            echo "export SLURM_CONF=$CONF"
            exit 0
        fi
        sleep 0.5
    done
    echo "slurm did not come up: see $S/slurmctld.log and $S/slurmd.log" >&2
    sinfo >&2 || true
    tail -20 "$S/slurmctld.log" "$S/slurmd.log" >&2 || true
    exit 1
    ;;
stop)
    # TERM, then up to 10 s for the daemons to exit, then KILL.
    for d in slurmd slurmctld munged; do pkill -x "$d" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null || exit 0
        sleep 0.2
    done
    for d in slurmd slurmctld munged; do pkill -KILL -x "$d" 2>/dev/null || true; done
    ;;
*)
    echo "usage: $0 install|start|stop" >&2
    exit 2
    ;;
esac
