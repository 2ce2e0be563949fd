#!/usr/bin/env bash
# A real single-node SLURM cluster on this (Debian) machine, for the cluster tests and for trying
# `python run.py -m hydra/launcher=slurm ...` without a cluster. Needs root and apt (Debian's slurm packages).
#
#   scripts/slurm_cluster.sh up       # install slurmctld + slurmd + slurm-client + munge if missing, write the
#                                     # config, start munged, slurmctld, slurmd; wait until `sinfo` shows the node idle
#   scripts/slurm_cluster.sh status   # exit 0 when the cluster answers and its node is usable
#   scripts/slurm_cluster.sh down     # cancel its jobs, stop the daemons it started, clear the job state
#
# Idempotent: `up` on a running cluster and `down` on a stopped one do nothing and exit 0.
# Files: /etc/slurm/slurm.conf (refuses to touch one it did not write), state under /var/spool/slurmctld and
# /var/spool/slurmd, logs under /var/log/slurm. Partition `debug` (the default) holds the one node, with
# CPUs = nproc and RealMemory = MemTotal - 1 GiB. Environment: SLURM_CLUSTER_WAIT_S (default 90) bounds the
# wait for the node; SLURM_CLUSTER_NO_INSTALL=1 never calls apt.
set -euo pipefail

MARKER="# condsynth single-node test cluster (scripts/slurm_cluster.sh)"
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/condsynth-slurm
CTLD_PID=$RUN_DIR/slurmctld.pid
SLURMD_PID=$RUN_DIR/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
WAIT_S=${SLURM_CLUSTER_WAIT_S:-90}
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "slurm_cluster: $*"; }
die() { echo "slurm_cluster: ERROR: $1" >&2; exit "${2:-1}"; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts slurmctld/slurmd/munged); current uid $(id -u)" 2
}

have_binaries() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
        && command -v munged >/dev/null && command -v scontrol >/dev/null
}

install_packages() {
    have_binaries && return 0
    [ "${SLURM_CLUSTER_NO_INSTALL:-0}" = 1 ] && die "slurm/munge are not installed and SLURM_CLUSTER_NO_INSTALL=1" 3
    command -v apt-get >/dev/null || die "slurm/munge are not installed and there is no apt-get (not Debian?): install ${PACKAGES[*]}" 3
    say "installing ${PACKAGES[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # packages' postinst scripts must not try to start services (no init system here); we start the daemons
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && created_policy=1
    fi
    local ok=0
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/tmp/slurm_cluster_apt.log 2>&1 && ok=1
    if [ $ok = 0 ]; then
        say "apt-get install failed; running apt-get update and retrying"
        apt-get update -q >>/tmp/slurm_cluster_apt.log 2>&1 || true
        apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>/tmp/slurm_cluster_apt.log 2>&1 && ok=1
    fi
    [ $created_policy = 1 ] && rm -f $policy
    [ $ok = 1 ] || { tail -20 /tmp/slurm_cluster_apt.log >&2; die "apt-get install ${PACKAGES[*]} failed (log: /tmp/slurm_cluster_apt.log)" 3; }
    have_binaries || die "apt-get installed ${PACKAGES[*]} but the slurm/munge binaries are still missing" 3
}

alive() {  # alive <pidfile>
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_name() { hostname -s; }

node_state() {  # the node's state as sinfo prints it (idle, mixed, alloc, down*, drain, ...) or nothing
    timeout 10 sinfo -h -N -n "$(node_name)" -o %T 2>/dev/null | head -1 || true
}

usable() {
    case "$(node_state)" in
        idle|mixed|allocated|alloc|completing) return 0 ;;
        *) return 1 ;;
    esac
}

write_config() {
    if [ -e $CONF ] && ! grep -qF "$MARKER" $CONF; then
        die "$CONF exists and was not written by this script: refusing to replace a real cluster's config" 4
    fi
    local host cpus mem_mb
    host=$(node_name)
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 - 1024}' /proc/meminfo)
    [ "$mem_mb" -gt 512 ] || mem_mb=512
    mkdir -p $CONF_DIR $CTLD_SPOOL $SLURMD_SPOOL $LOG_DIR $RUN_DIR
    cat >$CONF.tmp <<EOF
$MARKER
ClusterName=condsynth
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
# a requeued job may start again cred_expire seconds after the requeue (default 120)
AuthInfo=cred_expire=20
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# look at pending jobs (a requeued job becoming eligible) every few seconds, not every 30-60 s
SchedulerParameters=bf_interval=2,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv $CONF.tmp $CONF
    # slurm 22.05 reads cgroup.conf only with cgroup plugins; an empty one keeps older tools quiet
    [ -e $CONF_DIR/cgroup.conf ] || echo "$MARKER" >$CONF_DIR/cgroup.conf
}

start_munge() {
    if [ -s $MUNGE_PID ] && kill -0 "$(cat $MUNGE_PID)" 2>/dev/null; then return 0; fi
    mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    if id munge >/dev/null 2>&1; then
        chown munge:munge /etc/munge /etc/munge/munge.key /var/lib/munge /var/log/munge /run/munge
    fi
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    chmod 755 /run/munge
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged --force 9>&- || munged --force 9>&-
    else
        munged --force 9>&-
    fi
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "munged does not answer (munge -n | unmunge fails); see /var/log/munge/munged.log"
}

start_daemons() {
    if ! alive $CTLD_PID; then
        say "starting slurmctld"
        # -c: start clean (no jobs or node state from an earlier cluster)
        slurmctld -c -f $CONF 9>&- || die "slurmctld failed to start; see $LOG_DIR/slurmctld.log"
    fi
    for _ in $(seq 1 30); do
        timeout 5 scontrol ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    timeout 5 scontrol ping >/dev/null 2>&1 || die "slurmctld does not answer 'scontrol ping'; see $LOG_DIR/slurmctld.log"
    if ! alive $SLURMD_PID; then
        say "starting slurmd"
        slurmd -f $CONF 9>&- || die "slurmd failed to start; see $LOG_DIR/slurmd.log"
    fi
}

wait_idle() {
    local deadline=$((SECONDS + WAIT_S)) state resumed=0
    while [ $SECONDS -lt $deadline ]; do
        state=$(node_state)
        case "$state" in
            idle|mixed|allocated|alloc) say "node $(node_name) is $state"; return 0 ;;
            down*|drain*|drng*|fail*)
                if [ $resumed = 0 ]; then
                    scontrol update nodename="$(node_name)" state=resume >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        sleep 1
    done
    tail -20 $LOG_DIR/slurmd.log >&2 2>/dev/null || true
    die "node $(node_name) is not idle after ${WAIT_S}s (state: '$(node_state)'); logs: $LOG_DIR/"
}

cmd_up() {
    need_root
    exec 9>/run/condsynth-slurm.lock
    flock 9
    if have_binaries && usable; then
        say "already up: $(sinfo -h -N -o '%N %T %c CPUs %m MB' | head -1)"
        return 0
    fi
    install_packages
    write_config
    start_munge
    start_daemons
    wait_idle
    timeout 60 srun -N1 -n1 -t 1 hostname >/dev/null || die "srun -N1 hostname failed; see $LOG_DIR/"
    say "up: $(sinfo -h -N -o '%N %T %c CPUs %m MB' | head -1), partition debug"
}

stop_pid() {  # stop_pid <pidfile> <name>
    local pid
    alive "$1" || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    say "$2 ($pid) did not stop on SIGTERM; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
}

cmd_down() {
    need_root
    exec 9>/run/condsynth-slurm.lock
    flock 9
    if [ -e $CONF ] && ! grep -qF "$MARKER" $CONF; then
        die "$CONF was not written by this script: not stopping a cluster it did not start" 4
    fi
    if ! alive $CTLD_PID && ! alive $SLURMD_PID && ! alive $MUNGE_PID; then
        say "already down"
        return 0
    fi
    if alive $CTLD_PID; then
        timeout 10 scancel --full --signal=KILL --state=RUNNING --user=root 2>/dev/null || true
        timeout 10 scancel --user=root 2>/dev/null || true
    fi
    stop_pid $SLURMD_PID slurmd
    stop_pid $CTLD_PID slurmctld
    stop_pid $MUNGE_PID munged
    rm -rf "${CTLD_SPOOL:?}"/* "${SLURMD_SPOOL:?}"/*
    say "down"
}

cmd_status() {
    if ! have_binaries; then echo "down (slurm is not installed)"; return 1; fi
    if usable; then
        sinfo -N -o '%N %P %T %c %m'
        return 0
    fi
    echo "down (node state: '$(node_state)')"
    return 1
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 64 ;;
esac
