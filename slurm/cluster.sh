#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, without systemd: munge, MariaDB,
# slurmdbd (accounting: submitit polls sacct), slurmctld and slurmd, with one fake GPU so
# jobs asking for --gpus-per-node=1 are scheduled. Used by CI and `make slurm-up`.
#
#   slurm/cluster.sh install   # Debian packages (root)
#   slurm/cluster.sh up        # write the configs, start the daemons, wait for the node
#   slurm/cluster.sh down      # stop the daemons (state is kept under $ORGSEG_SLURM_STATE)
#   slurm/cluster.sh status
#
# It writes /etc/slurm/slurm.conf, gres.conf and slurmdbd.conf: meant for a test machine or
# a container, not for a host that already belongs to a cluster.
set -euo pipefail

STATE=${ORGSEG_SLURM_STATE:-/var/tmp/orgseg-slurm}
CONF_DIR=/etc/slurm
HOST=$(hostname -s)
CLUSTER=orgseg

log() { echo "[slurm] $*" >&2; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null \
        && command -v munged >/dev/null && command -v mariadbd >/dev/null; then
        return
    fi
    log "installing slurm-wlm slurmdbd munge mariadb-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        slurm-wlm slurmdbd munge mariadb-server >/dev/null
}

start_munge() {
    if pgrep -x munged >/dev/null; then return; fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
    chmod 0700 /etc/munge /var/log/munge /var/lib/munge
    chmod 0400 /etc/munge/munge.key
    chmod 0755 /run/munge
    su -s /bin/sh munge -c "munged --force"
}

start_mariadb() {
    if ! pgrep -x mariadbd >/dev/null; then
        mkdir -p /run/mysqld
        chown mysql:mysql /run/mysqld
        if [ ! -d /var/lib/mysql/mysql ]; then
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        fi
        (mariadbd --user=mysql --bind-address=127.0.0.1 --skip-name-resolve \
            >"$STATE/mariadb.log" 2>&1 &)
    fi
    for _ in $(seq 1 60); do
        mariadb -uroot -e "select 1" >/dev/null 2>&1 && break
        sleep 0.5
    done
    mariadb -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
}

write_configs() {
    mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$STATE/dev"
    [ -e "$STATE/dev/nvidia0" ] || mknod "$STATE/dev/nvidia0" c 1 3
    # the node's real CPU layout and memory, as slurmd sees them
    local node
    node=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime=.*//')
    cat >"$CONF_DIR/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmctldParameters=preempt_send_user_signal
ReturnToService=2
MinJobAge=30
KillWait=5
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 $node Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    cat >"$CONF_DIR/gres.conf" <<EOF
NodeName=$HOST Name=gpu File=$STATE/dev/nvidia0
EOF
    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
EOF
    chmod 0600 "$CONF_DIR/slurmdbd.conf"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq 1 $((seconds * 4))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    log "timed out waiting for $what"
    return 1
}

up() {
    install_packages
    mkdir -p "$STATE"
    start_munge
    start_mariadb
    write_configs
    pgrep -x slurmdbd >/dev/null || slurmdbd
    wait_for 30 "slurmdbd" sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
    pgrep -x slurmctld >/dev/null || slurmctld
    wait_for 30 "slurmctld" scontrol ping
    pgrep -x slurmd >/dev/null || slurmd
    wait_for 30 "the node" bash -c "sinfo -h -N -o '%t' | grep -qE '^(idle|mix|alloc)'" || {
        scontrol update nodename="$HOST" state=resume || true
        wait_for 30 "the node (resumed)" bash -c "sinfo -h -N -o '%t' | grep -qE '^(idle|mix)'"
    }
    log "up: $(sinfo -h -N -o '%N %t %c CPUs %m MB %G')"
}

down() {
    for daemon in slurmd slurmctld slurmdbd; do
        pkill -x "$daemon" 2>/dev/null || true
    done
    for daemon in slurmd slurmctld slurmdbd; do
        for _ in $(seq 1 40); do pgrep -x "$daemon" >/dev/null || break; sleep 0.25; done
    done
    log "down (mariadb and munge left running: ${ORGSEG_SLURM_KEEP_DB:-kept})"
}

case "${1:-up}" in
    install) install_packages ;;
    up) up ;;
    down) down ;;
    restart) down; up ;;
    status) sinfo -N -o '%N %t %c %m %G' && squeue ;;
    *) echo "usage: $0 install|up|down|restart|status" >&2; exit 2 ;;
esac
