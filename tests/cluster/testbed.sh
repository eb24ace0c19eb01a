#!/usr/bin/env bash
# hpcjupyter mini-cluster test bed: a login host and two compute nodes in network namespaces,
# with real Slurm 22.05, real OpenSSH (key, key+TOTP and password logins), a PBS Pro emulator
# and JupyterLab on a shared filesystem. The root namespace plays the laptop. See README.md.
#
#   testbed.sh up                 bring the bed up (no-op if it is already up and healthy)
#   testbed.sh down [--purge]     tear everything down (--purge also drops the pip/venv cache)
#   testbed.sh status             show what runs; exit 0 when healthy
#   testbed.sh exec HOST CMD...   run CMD as root inside HOST's namespaces (login, node1, node2)
#   testbed.sh link-down SECONDS [unreachable|blackhole]
#                                 take the laptop<->login link down for SECONDS (blocks)
#   testbed.sh restart-sshd WHICH restart one sshd: login, mfa, pw, node1, node2
#   testbed.sh fail-next CMD N    make the next N calls of CMD on login fail (squeue, qstat, ...)
#   testbed.sh calls [CMD]        count logged scheduler-command calls on login
#
# HPCJ_TESTBED_ACCOUNTING=1 adds slurmdbd + MariaDB on login (sacct answers); default: none.
# `up --twin` (or HPCJ_TESTBED_TWINS=1) adds the site twins (Cirrus/ARCHER2, Imperial CX3 shapes).
#
# Everything lives under $HPCJ_TESTBED_DIR (default /srv/hpcj-testbed); a pip cache and the
# parked JupyterLab venv live under $HPCJ_TESTBED_CACHE (default /var/cache/hpcj-testbed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
BED=${HPCJ_TESTBED_DIR:-/srv/hpcj-testbed}
BED=${BED%/}
CACHE=${HPCJ_TESTBED_CACHE:-/var/cache/hpcj-testbed}
export HPCJ_TESTBED_DIR=$BED HPCJ_TESTBED_CACHE=$CACHE

# ---- addresses and names -------------------------------------------------------------------
RANGE=10.77.0.0/16            # routed "unreachable" in the root namespace before anything else
LAPTOP_IP=10.77.1.1           # root namespace end of the laptop<->login link (10.77.1.0/24)
LOGIN_EXT_IP=10.77.1.2        # login's address on that link
LOGIN_IP=10.77.2.1            # login on the internal network 10.77.2.0/24 (bridge br0 in login)
NODE1_IP=10.77.2.11
NODE2_IP=10.77.2.12
HOSTS=(login node1 node2)
NODES=(node1 node2)
NS_PREFIX=hpcj-               # network namespaces: hpcj-login, hpcj-node1, hpcj-node2
LAP_IF=hpcj-lap               # the laptop's veth
PORT_KEY=22
PORT_MFA=2222
PORT_PW=2223
TUSER=hpcuser
PBS_SERVER=pbs-tb
NODE_CPUS=4
NODE_MEM_MB=8000
PBS_NODE_CPUS=4
PBS_NODE_MEM=64gb
OATH_WINDOW=20   # steps either side of now pam_oath accepts: test logins in one 30-s step need fresh ones
ACCOUNTING=${HPCJ_TESTBED_ACCOUNTING:-0}   # 1: slurmdbd + MariaDB, so that sacct answers
TWINS=${HPCJ_TESTBED_TWINS:-0}             # 1 (or `up --twin`): the site twins, see README.md
JUPYTER_SPEC=${HPCJ_TESTBED_JUPYTER_SPEC:-jupyterlab}   # pip requirement(s), space separated
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

HOMEDIR="$BED/shared/home/$TUSER"
# ---- site twins (up --twin): HPE Cray EX (Cirrus, ARCHER2) and Imperial CX3 shapes --------------
# The twins' compute nodes are declared the size of the sites' (slurmd: config_overrides; the PBS
# emulator: its node table), so that the built-in profiles' defaults fit as they do there
# (SITES.md: Cirrus 288 cores and 768 GB per standard node, hardware.md; ARCHER2 serial nodes
# 32 cores / 125 GB per user, analysis.md; CX3's large queues take up to 128 cores and 920 GB on
# one node, job-sizing-guidance.md). Nothing is consumed but the declared numbers.
TWIN_NODE_CPUS=288
TWIN_NODE_MEM_MB=786432
TWIN_PBS_NODE_CPUS=128
TWIN_PBS_NODE_MEM=920gb
CRAY_USER=crayuser            # key + TOTP on the MFA sshd, like SAFE accounts
IC_USER=icuser                # password only, like Imperial
PROJECT=t01
BUDGET=t01-test
TWIN_FS="$BED/twins/fs"       # the laptop's view of the twins' /home (login only), /work, /epccfs, /rds
TWIN_MOUNTS=(/home /work /epccfs /rds)
PE="$BED/shared/twins/cray-pe"              # the "Cray PE": modulecmd, python/3.11 (cray-python)
CRAY_HOME=/home/$PROJECT/$PROJECT/$CRAY_USER
CRAY_WORK=/work/$PROJECT/$PROJECT/$CRAY_USER
CRAY_EPCCFS=/epccfs/$PROJECT/$PROJECT/$CRAY_USER
IC_HOME=/rds/general/user/$IC_USER/home
VENV="$BED/shared/jupyter-venv"
SSHD_NAMES=(login mfa pw node1 node2)

log() { printf '[testbed %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'testbed: error: %s\n' "$*" >&2; exit 1; }
need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, daemons, routes)"; }

ip_of() {
  case $1 in
    login) echo "$LOGIN_IP" ;; node1) echo "$NODE1_IP" ;; node2) echo "$NODE2_IP" ;;
    *) die "unknown host $1" ;;
  esac
}

# ---- entering hosts -------------------------------------------------------------------------
# Each host has a holder process (sleep) living in the host's network namespace and in its own
# UTS and mount namespaces. Daemons and commands enter all three with nsenter. (`ip netns exec`
# is avoided for anything long-lived: it remounts /sys and hides /sys/fs/cgroup, and slurmd
# then refuses to start.)
holder_pid() {
  local h=$1 pid
  local f="$BED/run/holder-$h.pid"
  [[ -r $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  [[ "$(stat -L -c %d:%i "/proc/$pid/ns/net" 2>/dev/null)" == \
     "$(stat -L -c %d:%i "/run/netns/$NS_PREFIX$h" 2>/dev/null)" ]] || return 1
  echo "$pid"
}

in_host() {
  local h=$1 pid
  shift
  pid=$(holder_pid "$h") || die "host $h is not running"
  nsenter -t "$pid" -u -m -n -- "$@"
}

# Start a daemon inside a host with a clean environment, detached from our stdio.
start_in() {
  local h=$1
  shift
  # fd 9 is the up/down lock: daemons must not inherit it
  in_host "$h" env -i PATH="$SYS_PATH" LANG=C.UTF-8 HOME=/root "$@" \
    </dev/null >>"$BED/logs/daemons-$h.out" 2>&1 9<&-
}

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + t))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "timed out after ${t}s waiting for $what"
}

pid_alive() { [[ -r $1 ]] && kill -0 "$(<"$1")" 2>/dev/null; }

# ---- internal: runs as the holder inside fresh UTS+mount namespaces -------------------------
hostinit() {
  local h=$1 d="$BED/hosts/$1" f
  hostname "$h"
  mount --make-rprivate /
  # private /run (sshd privsep dir, no view of the laptop's /run/netns or daemons)
  mount -t tmpfs -o mode=0755,size=64m "hpcj-run-$h" /run
  mkdir -p /run/sshd /run/lock
  chmod 0755 /run/sshd
  chmod 1777 /run/lock
  mount --bind "$d/tmp" /tmp
  mount --bind "$d/var-tmp" /var/tmp
  mount --bind "$d/var-log" /var/log
  # A private copy of the whole /etc (made by gen_files), not bind mounts of single files.
  # Why: a bind mount of a single file is attached to that file's dentry. `useradd`, `passwd`,
  # `vipw`, apt (adduser in maintainer scripts) ... write a new /etc/passwd and rename() it over
  # the old one; since Linux 3.18 the rename detaches every mount on the old dentry in all
  # namespaces, so the hosts silently fell back to the laptop's passwd without `hpcuser` and
  # every login failed with "Permission denied (publickey)". A mount of the /etc directory
  # itself is never renamed away. Its passwd/group/shadow are symlinks to $BED/etc/, the one
  # copy `up` writes (users of the bed and of the twins); hosts, hostname and resolv.conf are
  # plain per-host files. `status` checks that every host still resolves the bed's users.
  mount --bind "$d/etc" /etc
  mount --bind "$BED/etc/slurm" /etc/slurm
  if [[ "$(cat "$BED/run/twins" 2>/dev/null)" == 1 ]]; then
    # twins: the site filesystems at their real paths; /home only on login (as on ARCHER2 and
    # Cirrus, where /home is not mounted on compute nodes): the nodes get an empty read-only one
    mount --bind "$TWIN_FS/work" /work
    mount --bind "$TWIN_FS/epccfs" /epccfs
    mount --bind "$TWIN_FS/rds" /rds
    if [[ $h == login ]]; then mount --bind "$TWIN_FS/home" /home
    else mount -t tmpfs -o ro,mode=0755,size=64k "hpcj-nohome-$h" /home; fi
  fi
  if [[ $h == login ]]; then
    mount --bind "$BED/etc/pam.d" /etc/pam.d
    # wrappers (fault injection, call counting) and the PBS emulator first in every PATH
    mount -t overlay hpcj-login-bin -o "lowerdir=$BED/bin/login:/usr/local/bin" /usr/local/bin
  fi
  echo $$ >"$BED/run/holder-$h.pid"
  exec sleep infinity
}

# ---- generation -----------------------------------------------------------------------------
render() {  # render TEMPLATE DEST [KEY=VALUE...]
  local src=$1 dst=$2 kv args=()
  shift 2
  for kv in BED="$BED" LOGIN_IP="$LOGIN_IP" NODE1_IP="$NODE1_IP" NODE2_IP="$NODE2_IP" \
            NODE_CPUS="$NODE_CPUS" NODE_MEM_MB="$NODE_MEM_MB" TUSER="$TUSER" \
            OATH_WINDOW="$OATH_WINDOW" "$@"; do
    args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
  done
  sed "${args[@]}" "$src" >"$dst"
  if grep -q '@[A-Z_0-9]*@' "$dst"; then die "unrendered placeholder in $dst"; fi
}

pick_uid() {
  local u=2000
  while getent passwd "$u" >/dev/null || getent group "$u" >/dev/null; do u=$((u + 1)); done
  echo "$u"
}

gen_files() {
  local h uid pw hash secret_hex secret_b32 n
  umask 022
  mkdir -p "$BED"/{etc/slurm,etc/ssh,logs,run,laptop,bin/login,faults,pbs/bin}
  mkdir -p "$BED/shared/munge" "$BED/shared/home" "$BED/shared/pbs/spool/jobs"
  chmod 0755 "$BED" "$BED/shared" "$BED/shared/home"
  chmod 0700 "$BED/laptop"
  for h in "${HOSTS[@]}"; do
    mkdir -p "$BED/hosts/$h"/{tmp,var-tmp,var-log,ssh}
    chmod 1777 "$BED/hosts/$h/tmp" "$BED/hosts/$h/var-tmp"
    # the host's private /etc (see hostinit): a snapshot of the laptop's (4 MB, ~20 ms)
    rm -rf "$BED/hosts/$h/etc"
    cp -a /etc "$BED/hosts/$h/etc"
    rm -f "$BED/hosts/$h/etc"/{hosts,hostname,resolv.conf,passwd,group,shadow,passwd-,group-,shadow-}
    ln -s "$BED/etc/passwd" "$BED/hosts/$h/etc/passwd"
    ln -s "$BED/etc/group" "$BED/hosts/$h/etc/group"
    ln -s "$BED/etc/shadow" "$BED/hosts/$h/etc/shadow"
    {
      echo "127.0.0.1 localhost"
      echo "::1 localhost ip6-localhost ip6-loopback"
      echo "$LOGIN_IP login"
      echo "$NODE1_IP node1"
      echo "$NODE2_IP node2"
    } >"$BED/hosts/$h/etc/hosts"
    echo "$h" >"$BED/hosts/$h/etc/hostname"
    echo "# hpcjupyter test bed: no DNS inside the cluster (names are in /etc/hosts)" \
      >"$BED/hosts/$h/etc/resolv.conf"
  done
  mkdir -p "$BED/hosts/login/slurmctld"
  for h in "${NODES[@]}"; do mkdir -p "$BED/hosts/$h/slurmd" "$BED/hosts/$h/pbs_mom"; done

  # --- the test user: private passwd/group/shadow, bind-mounted inside the hosts only ---
  uid=$(pick_uid)
  pw="tb-$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 14)"
  hash=$(printf '%s' "$pw" | /usr/bin/python3 -W ignore -c \
    'import crypt,sys; print(crypt.crypt(sys.stdin.read(), crypt.mksalt(crypt.METHOD_SHA512)))')
  grep -v "^$TUSER:" /etc/passwd >"$BED/etc/passwd"
  echo "$TUSER:x:$uid:$uid:hpcjupyter test user:$HOMEDIR:/bin/bash" >>"$BED/etc/passwd"
  grep -v "^$TUSER:" /etc/group >"$BED/etc/group"
  echo "$TUSER:x:$uid:" >>"$BED/etc/group"
  awk -F: -v u="$TUSER" '$1 != u { print $1 ":*:19000:0:99999:7:::" }' /etc/passwd \
    >"$BED/etc/shadow"
  echo "$TUSER:$hash:19000:0:99999:7:::" >>"$BED/etc/shadow"
  chmod 0644 "$BED/etc/passwd" "$BED/etc/group"
  chown root:shadow "$BED/etc/shadow" 2>/dev/null || true
  chmod 0640 "$BED/etc/shadow"
  printf '%s\n' "$pw" >"$BED/laptop/password"
  echo "$uid" >"$BED/run/uid"

  # --- TOTP secret for pam_oath ---
  secret_hex=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
  secret_b32=$(/usr/bin/python3 -c 'import base64,sys; print(base64.b32encode(bytes.fromhex(sys.argv[1])).decode())' "$secret_hex")
  printf 'HOTP/T30/6\t%s\t-\t%s\n' "$TUSER" "$secret_hex" >"$BED/etc/users.oath"
  chmod 0600 "$BED/etc/users.oath"
  printf '%s\n' "$secret_b32" >"$BED/laptop/totp_secret"
  printf '%s\n' "$secret_hex" >"$BED/laptop/totp_secret_hex"

  # --- PAM: the login host sees a copy of /etc/pam.d plus the sshd-mfa service ---
  cp -a /etc/pam.d "$BED/etc/pam.d"
  render "$HERE/templates/pam-sshd-mfa.in" "$BED/etc/pam.d/sshd-mfa"
  ln -sf /usr/sbin/sshd "$BED/bin/sshd-mfa"   # progname "sshd-mfa" = PAM service name
  ln -sf /usr/sbin/sshd "$BED/bin/sshd-pw"

  # --- munge key and slurm.conf ---
  mkdir -p "$BED/etc/munge"
  head -c 1024 /dev/urandom >"$BED/etc/munge/munge.key"
  chmod 0700 "$BED/etc/munge"
  chmod 0400 "$BED/etc/munge/munge.key"
  echo "$ACCOUNTING" >"$BED/run/accounting"
  echo "$TWINS" >"$BED/run/twins"
  if [[ $ACCOUNTING == 1 ]]; then
    render "$HERE/templates/slurm.conf.in" "$BED/etc/slurm/slurm.conf" \
      ACCT_TYPE=accounting_storage/slurmdbd ACCT_HOST_LINE="AccountingStorageHost=login" \
      ACCT_PASS_LINE="AccountingStoragePass=$BED/shared/munge/munge.socket" \
      TWIN_PARTITIONS="$(twin_partitions)"
    render "$HERE/templates/slurmdbd.conf.in" "$BED/etc/slurm/slurmdbd.conf"
    chmod 0600 "$BED/etc/slurm/slurmdbd.conf"
  else
    render "$HERE/templates/slurm.conf.in" "$BED/etc/slurm/slurm.conf" \
      ACCT_TYPE=accounting_storage/none ACCT_HOST_LINE="# (no AccountingStorageHost)" \
      ACCT_PASS_LINE="# (no AccountingStoragePass)" TWIN_PARTITIONS="$(twin_partitions)"
  fi
  cp /etc/slurm/plugstack.conf "$BED/etc/slurm/" 2>/dev/null || true
  [[ -d /etc/slurm/plugstack.conf.d ]] && cp -a /etc/slurm/plugstack.conf.d "$BED/etc/slurm/"

  # --- ssh keys: host keys, the laptop key, the user's internal key ---
  for h in "${HOSTS[@]}"; do
    ssh-keygen -q -t ed25519 -N '' -C "$h.hpcj-testbed" -f "$BED/hosts/$h/ssh/ssh_host_ed25519_key"
  done
  ssh-keygen -q -t ed25519 -N '' -C "laptop@hpcj-testbed" -f "$BED/laptop/id_ed25519"
  mkdir -p "$HOMEDIR/.ssh" "$HOMEDIR/hpcj-jobs"
  ssh-keygen -q -t ed25519 -N '' -C "$TUSER@hpcj-testbed" -f "$HOMEDIR/.ssh/id_ed25519"
  cat "$BED/laptop/id_ed25519.pub" "$HOMEDIR/.ssh/id_ed25519.pub" >"$HOMEDIR/.ssh/authorized_keys"
  local kl k1 k2
  kl=$(cut -d' ' -f1,2 "$BED/hosts/login/ssh/ssh_host_ed25519_key.pub")
  k1=$(cut -d' ' -f1,2 "$BED/hosts/node1/ssh/ssh_host_ed25519_key.pub")
  k2=$(cut -d' ' -f1,2 "$BED/hosts/node2/ssh/ssh_host_ed25519_key.pub")
  {
    echo "$LOGIN_EXT_IP $kl"
    echo "[$LOGIN_EXT_IP]:$PORT_MFA $kl"
    echo "[$LOGIN_EXT_IP]:$PORT_PW $kl"
    echo "login,$LOGIN_IP $kl"
    echo "node1,$NODE1_IP $k1"
    echo "node2,$NODE2_IP $k2"
  } >"$BED/laptop/known_hosts"
  {
    echo "login,$LOGIN_IP $kl"
    echo "node1,$NODE1_IP $k1"
    echo "node2,$NODE2_IP $k2"
  } >"$HOMEDIR/.ssh/known_hosts"
  cp /etc/skel/.bashrc /etc/skel/.profile /etc/skel/.bash_logout "$HOMEDIR/" 2>/dev/null || true
  chown -R "$uid:$uid" "$HOMEDIR"
  chmod 0755 "$HOMEDIR"
  chmod 0700 "$HOMEDIR/.ssh"
  chmod 0600 "$HOMEDIR/.ssh/authorized_keys" "$HOMEDIR/.ssh/id_ed25519"

  # --- the laptop's ssh config (OpenSSH reads ~/.ssh of the passwd home: always pass -F) ---
  cat >"$BED/laptop/ssh_config" <<EOF
# hpcjupyter test bed: the laptop's view. Use: ssh -F $BED/laptop/ssh_config tb-login
Host tb-login
    HostName $LOGIN_EXT_IP
    Port $PORT_KEY

Host tb-login-mfa
    HostName $LOGIN_EXT_IP
    Port $PORT_MFA

Host tb-login-pw
    HostName $LOGIN_EXT_IP
    Port $PORT_PW
    PubkeyAuthentication no
    PreferredAuthentications password,keyboard-interactive

# compute nodes: reachable only through the login host, e.g. ssh -J tb-login node1
Host node1 node2

Host tb-login tb-login-mfa tb-login-pw node1 node2
    User $TUSER
    IdentityFile $BED/laptop/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $BED/laptop/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    ConnectTimeout 10
EOF
  chmod 0600 "$BED/laptop/ssh_config"

  # --- sshd configs ---
  local name host variant port
  for name in "${SSHD_NAMES[@]}"; do
    case $name in
      login) host=login variant=key port=$PORT_KEY ;;
      mfa) host=login variant=mfa port=$PORT_MFA ;;
      pw) host=login variant=pw port=$PORT_PW ;;
      *) host=$name variant=key port=22 ;;
    esac
    render "$HERE/templates/sshd-$variant.conf.in" "$BED/etc/ssh/sshd-$name.conf" \
      NAME="$name" PORT="$port"
    render "$HERE/templates/sshd-common.conf.in" "$BED/run/sshd-common.tmp" \
      ALLOW_USERS="$TUSER$([[ $TWINS == 1 ]] && echo " $CRAY_USER $IC_USER")" HOSTKEY="$BED/hosts/$host/ssh/ssh_host_ed25519_key" PIDFILE="$BED/run/sshd-$name.pid"
    cat "$BED/run/sshd-common.tmp" >>"$BED/etc/ssh/sshd-$name.conf"
    rm -f "$BED/run/sshd-common.tmp"
    : >"$BED/logs/sshd-$name.log"
  done

  # --- PBS emulator (server side on login, mom side run on the nodes over ssh) ---
  cp "$HERE"/pbs/pbsemu.py "$HERE"/pbs/qsub "$HERE"/pbs/qstat "$HERE"/pbs/qdel "$HERE"/pbs/qrls "$HERE"/pbs/qselect \
    "$BED/pbs/bin/"
  chmod 0755 "$BED"/pbs/bin/q*
  /usr/bin/python3 - "$BED" "$PBS_SERVER" "$PBS_NODE_CPUS" "$PBS_NODE_MEM" <<'PY'
import json, sys
bed, server, cpus, mem = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cfg = {
    "server": server,
    "submit_host": "login",
    "pbs_version": "23.06.06",
    "spool": f"{bed}/shared/pbs/spool",
    "mom_spool": f"{bed}/hosts/{{node}}/pbs_mom",
    "nodes": {n: {"ncpus": cpus, "mem": mem, "ngpus": 0} for n in ("node1", "node2")},
    "queues": ["workq", "v1_small72", "v1_medium72", "v1_gpu72"],
    "default_queue": "workq",
    "default_walltime": "01:00:00",
    "sched_delay": 1.0,
    "kill_delay": 10,
    "python": "/usr/bin/python3",
    "pbsemu": f"{bed}/pbs/bin/pbsemu.py",
}
json.dump(cfg, open(f"{bed}/pbs/bin/config.json", "w"), indent=2)
PY
  echo 1 >"$BED/shared/pbs/spool/seq"
  chown -R "$uid:$uid" "$BED/shared/pbs"
  chmod 0700 "$BED/shared/pbs/spool"
  for h in "${NODES[@]}"; do chown "$uid:$uid" "$BED/hosts/$h/pbs_mom"; chmod 0700 "$BED/hosts/$h/pbs_mom"; done

  # --- login wrappers: call log + fault injection, then the real command ---
  cat >"$BED/bin/hpcj-wrap" <<EOF
#!/bin/sh
# hpcjupyter test bed wrapper: logs the call, injects faults, then runs the real command.
name=\${0##*/}
F=$BED/faults
printf '%s %s %s\n' "\$(date +%s.%N)" "\$name" "\$*" >>"\$F/calls.log" 2>/dev/null
if [ -s "\$F/\$name.delay" ]; then sleep "\$(cat "\$F/\$name.delay")"; fi
if [ -s "\$F/\$name.fail" ]; then
  if (
    flock 9
    n=\$(cat "\$F/\$name.fail" 2>/dev/null || echo 0)
    [ "\${n:-0}" -gt 0 ] 2>/dev/null || exit 1
    echo \$((n - 1)) >"\$F/\$name.fail"
  ) 9>>"\$F/.lock"; then
    if [ -s "\$F/\$name.fail.msg" ]; then cat "\$F/\$name.fail.msg" >&2
    else echo "\$name: error: Unable to contact slurm controller (connect failure) [injected by hpcj test bed]" >&2; fi
    rc=1; [ -s "\$F/\$name.fail.rc" ] && rc=\$(cat "\$F/\$name.fail.rc")
    exit "\$rc"
  fi
fi
case \$name in
  qsub|qstat|qdel|qrls|qselect) exec $BED/pbs/bin/\$name "\$@" ;;
  *) exec /usr/bin/\$name "\$@" ;;
esac
EOF
  chmod 0755 "$BED/bin/hpcj-wrap"
  for n in squeue sacct scontrol sbatch scancel sinfo qsub qstat qdel qrls qselect; do
    ln -sf "$BED/bin/hpcj-wrap" "$BED/bin/login/$n"
  done
  : >"$BED/faults/calls.log"
  : >"$BED/faults/.lock"
  chown -R "$uid:$uid" "$BED/faults"
}

# ---- network ----------------------------------------------------------------------------------
net_up() {
  local existing h
  # 1. Before any interface exists: nothing of the test range may ever leave this machine.
  existing=$(ip -4 route show "$RANGE" 2>/dev/null || true)
  if [[ -z $existing ]]; then
    ip route add unreachable "$RANGE"
  elif [[ $existing != unreachable* ]]; then
    die "root namespace already routes $RANGE ($existing): refusing to use that range"
  fi
  existing=$(ip -4 route show | grep -E '^10\.77\.' | grep -v "^unreachable $RANGE" || true)
  [[ -z $existing ]] || die "routes inside $RANGE already exist in the root namespace: $existing"

  if [[ -d /run/netns ]]; then echo yes >"$BED/run/run-netns-preexisting"; else echo no >"$BED/run/run-netns-preexisting"; fi
  for h in "${HOSTS[@]}"; do ip netns add "$NS_PREFIX$h"; done
  for h in "${HOSTS[@]}"; do
    ip -n "$NS_PREFIX$h" link set lo up
    ip netns exec "$NS_PREFIX$h" sysctl -qw net.ipv4.ip_forward=0
  done

  # 2. laptop <-> login link: the only link route in the root namespace
  ip link add "$LAP_IF" type veth peer name ext0 netns "${NS_PREFIX}login"
  ip addr add "$LAPTOP_IP/24" dev "$LAP_IF"
  ip link set "$LAP_IF" up
  ip -n "${NS_PREFIX}login" addr add "$LOGIN_EXT_IP/24" dev ext0
  ip -n "${NS_PREFIX}login" link set ext0 up

  # 3. internal network: a bridge inside login (so it exists nowhere in the root namespace)
  ip -n "${NS_PREFIX}login" link add br0 type bridge
  ip -n "${NS_PREFIX}login" addr add "$LOGIN_IP/24" dev br0
  ip -n "${NS_PREFIX}login" link set br0 up
  for h in "${NODES[@]}"; do
    ip -n "${NS_PREFIX}login" link add "v-$h" type veth peer name eth0 netns "$NS_PREFIX$h"
    ip -n "${NS_PREFIX}login" link set "v-$h" master br0 up
    ip -n "$NS_PREFIX$h" addr add "$(ip_of "$h")/24" dev eth0
    ip -n "$NS_PREFIX$h" link set eth0 up
  done
}

start_holders() {
  local h
  for h in "${HOSTS[@]}"; do
    rm -f "$BED/run/holder-$h.pid"
    setsid nsenter --net="/run/netns/$NS_PREFIX$h" -- \
      unshare --uts --mount --propagation private -- "$BASH" "$SELF" _hostinit "$h" \
      </dev/null >>"$BED/logs/holder-$h.log" 2>&1 9<&- &
  done
  for h in "${HOSTS[@]}"; do wait_for 10 "holder of $h" holder_pid "$h"; done
}

# ---- daemons ----------------------------------------------------------------------------------
start_munge() {
  start_in login /usr/sbin/munged --force \
    --key-file="$BED/etc/munge/munge.key" --socket="$BED/shared/munge/munge.socket" \
    --pid-file="$BED/run/munged.pid" --log-file="$BED/logs/munged.log" \
    --seed-file="$BED/run/munged.seed"
  wait_for 10 "munged socket" test -S "$BED/shared/munge/munge.socket"
}

sshd_cmd() {  # prints: HOST BINARY for an sshd name
  case $1 in
    login) echo "login /usr/sbin/sshd" ;;
    mfa) echo "login $BED/bin/sshd-mfa" ;;
    pw) echo "login $BED/bin/sshd-pw" ;;
    node1|node2) echo "$1 /usr/sbin/sshd" ;;
    *) die "unknown sshd '$1' (login, mfa, pw, node1, node2)" ;;
  esac
}

start_sshd() {
  local name=$1 host bin
  read -r host bin < <(sshd_cmd "$name")
  in_host "$host" "$bin" -t -f "$BED/etc/ssh/sshd-$name.conf" || die "sshd-$name config invalid"
  rm -f "$BED/run/sshd-$name.pid"
  start_in "$host" "$bin" -f "$BED/etc/ssh/sshd-$name.conf" -E "$BED/logs/sshd-$name.log"
  wait_for 10 "sshd-$name" pid_alive "$BED/run/sshd-$name.pid"
}

stop_sshd() {
  local name=$1 f="$BED/run/sshd-$1.pid" pid
  [[ -r $f ]] || return 0
  pid=$(<"$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$f"
}

# MariaDB + slurmdbd on login. The slow parts on a fresh bed are mariadb-install-db (~2 s) and
# slurmdbd creating its tables (~1.5 s); so the first `up` parks a pristine copy of the database
# (cluster, account, user; no jobs: taken before slurmctld starts) in $CACHE/slurmdb, and later
# `up`s copy it back instead (job ids restart at 1 on every bed, so the copy must hold no jobs).
start_accounting() {
  local db="$BED/hosts/login/mysql" snap="$CACHE/slurmdb" stamp t=$EPOCHREALTIME
  stamp="$(dpkg-query -W -f '${Package}=${Version} ' slurmdbd mariadb-server 2>/dev/null || true)/ hpcjtb hpcj $TUSER"
  log "starting MariaDB and slurmdbd (accounting)"
  in_host login mkdir -p /run/mysqld
  if [[ -f $snap/.hpcj-stamp && "$(<"$snap/.hpcj-stamp")" == "$stamp" ]]; then
    cp -a "$snap/data" "$db"
    mariadb_start
    slurmdbd_start
    log "accounting up in $(since "$t")s (database from $snap)"
    return 0
  fi
  rm -rf "$snap" "$db"
  in_host login mariadb-install-db --no-defaults --user=root --datadir="$db" \
    --auth-root-authentication-method=socket --skip-test-db >"$BED/logs/mariadb-install.log" 2>&1 9<&- \
    || die "mariadb-install-db failed (see $BED/logs/mariadb-install.log)"
  mariadb_start
  slurmdbd_start
  in_host login /usr/bin/sacctmgr -i add cluster hpcjtb >/dev/null
  in_host login /usr/bin/sacctmgr -i add account hpcj Description="hpcjupyter tests" Organization=hpcj >/dev/null
  in_host login /usr/bin/sacctmgr -i add user "$TUSER" Account=hpcj >/dev/null
  # park the pristine database: a clean shutdown first, so that the copy is consistent
  stop_pidfile "$BED/run/slurmdbd.pid"
  stop_pidfile "$BED/run/mariadb.pid"
  mkdir -p "$CACHE"
  rm -rf "$snap.tmp"
  mkdir -p "$snap.tmp"
  cp -a "$db" "$snap.tmp/data"
  echo "$stamp" >"$snap.tmp/.hpcj-stamp"
  mv "$snap.tmp" "$snap"
  mariadb_start
  slurmdbd_start
  log "accounting up in $(since "$t")s (fresh database, parked in $snap for the next up)"
}

mariadb_start() {
  local sock=/run/mysqld/mysqld.sock
  start_in login setsid -f /usr/sbin/mariadbd --no-defaults --user=root --datadir="$BED/hosts/login/mysql" \
    --socket="$sock" --pid-file="$BED/run/mariadb.pid" --log-error="$BED/logs/mariadb.log" \
    --skip-networking --skip-log-bin --innodb-buffer-pool-size=64M \
    --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0 --skip-name-resolve
  wait_for 30 "MariaDB socket" in_host login test -S "$sock"
}

slurmdbd_start() {
  start_in login /usr/sbin/slurmdbd
  wait_for 30 "slurmdbd" in_host login /usr/bin/sacctmgr -n -i list cluster
}

stop_pidfile() {  # TERM the daemon of a pid file and wait (up to 30 s) until it has gone
  local pid i
  [[ -r $1 ]] || return 0
  pid=$(<"$1")
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  die "$1: pid $pid did not stop"
}

since() {  # since T0 [T1]: seconds from T0 to T1 (default now), $EPOCHREALTIME values, 1 decimal
  local t1=${2:-$EPOCHREALTIME}
  local d=$(( (${t1/./} - ${1/./}) / 100000 ))
  echo "$((d / 10)).$((d % 10))"
}

start_slurm() {
  if [[ $ACCOUNTING == 1 ]]; then start_accounting; fi
  local h t=$EPOCHREALTIME
  start_in login /usr/sbin/slurmctld
  wait_for 20 "slurmctld" in_host login /usr/bin/scontrol ping
  local t1=$EPOCHREALTIME
  for h in "${NODES[@]}"; do start_in "$h" /usr/sbin/slurmd; done
  wait_for 60 "slurm nodes idle" nodes_idle
  log "slurm up in $(since "$t")s (slurmctld answered after $(since "$t" "$t1")s)"
}

nodes_idle() {
  local states
  states=$(in_host login /usr/bin/sinfo -h -N -o '%N %T' 2>/dev/null | sort -u)
  [[ $(grep -c ' idle$' <<<"$states") -eq ${#NODES[@]} ]]
}

# ---- JupyterLab venv on the shared filesystem ---------------------------------------------------
venv_start() {
  local parked="$CACHE/jupyter-venv"
  mkdir -p "$CACHE"
  if [[ -f $VENV/.hpcj-stamp ]]; then return 0; fi
  if [[ -f $parked/.hpcj-stamp && "$(<"$parked/.hpcj-stamp")" == "$VENV $JUPYTER_SPEC" ]]; then
    mv "$parked" "$VENV"
    log "JupyterLab venv restored from cache ($CACHE)"
    return 0
  fi
  rm -rf "$parked"
  log "building JupyterLab venv in $VENV (pip cache $CACHE/pip)"
  local spec
  read -r -a spec <<<"$JUPYTER_SPEC"
  (
    set -e
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
    PIP_CACHE_DIR="$CACHE/pip" "$VENV/bin/pip" install --disable-pip-version-check \
      --no-input --progress-bar off "${spec[@]}"
    "$VENV/bin/jupyter" lab --version
    echo "$VENV $JUPYTER_SPEC" >"$VENV/.hpcj-stamp"
  ) </dev/null >"$BED/logs/venv-build.log" 2>&1 9<&- &
  echo $! >"$BED/run/venv-build.bgpid"
}

venv_wait() {
  local f="$BED/run/venv-build.bgpid" pid
  if [[ -r $f ]]; then
    pid=$(<"$f")
    wait "$pid" 2>/dev/null || true
    rm -f "$f"
  fi
  [[ -f $VENV/.hpcj-stamp ]] || { tail -n 30 "$BED/logs/venv-build.log" >&2; die "JupyterLab venv build failed (see $BED/logs/venv-build.log)"; }
  chmod -R a+rX "$VENV"
}

# ---- site twins (up --twin) ---------------------------------------------------------------------
# The bed shaped like the sites of the built-in profiles, for end-to-end runs of those profiles:
#   * HPE Cray EX (Cirrus, ARCHER2): aliases login.cirrus.ac.uk / login.archer2.ac.uk -> the key +
#     TOTP sshd; user crayuser with home /home/t01/t01/crayuser on login only, /work/t01/t01/crayuser
#     and /epccfs/t01/t01/crayuser everywhere; a `module` shim (restore, load cray-python, list,
#     purge); cray-python = Python 3.11 without Jupyter; JupyterLab pip --user installed under
#     /work (PYTHONUSERBASE) and as a venv on /epccfs; Slurm partitions standard/serial/gpu and, with
#     accounting, accounts t01 and t01-test and the QoS standard/short/long/serial/gpu-shd.
#   * Imperial CX3 (PBS Pro): alias login.cx3.hpc.imperial.ac.uk -> the password sshd; user icuser
#     with home /rds/general/user/icuser/home everywhere, ~/miniforge3 with a conda shim and the
#     env `jupyter` (a venv with JupyterLab).
# The site paths (/home, /work, /epccfs, /rds) are bind mounts inside the hosts of directories under
# $BED/twins/fs; mount points missing on the laptop are created by `up` and removed by `down`.
# The JupyterLab installs are parked in $CACHE/twins by `down`, like the bed's own venv.
twin_partitions() {
  if [[ $TWINS == 1 ]]; then
    echo "PartitionName=gpu Nodes=node1,node2 Default=NO MaxTime=48:00:00 State=UP"
  else
    echo "# (no twin partitions)"
  fi
}

twin_preflight() {
  local d
  for d in "${TWIN_MOUNTS[@]}"; do
    case "$BED/" in "$d"/*) die "--twin: HPCJ_TESTBED_DIR ($BED) must not be under $d (the twins mount over it)" ;; esac
    case "$CACHE/" in "$d"/*) die "--twin: HPCJ_TESTBED_CACHE ($CACHE) must not be under $d (the twins mount over it)" ;; esac
  done
  [[ -x /usr/bin/python3.11 ]] || die "--twin needs /usr/bin/python3.11 (Debian 12: python3.11)"
}

free_id() {  # the first uid/gid >= $1 used neither on the laptop nor in the bed's passwd/group
  local n=$1
  while getent passwd "$n" >/dev/null || getent group "$n" >/dev/null \
    || cut -d: -f3 "$BED/etc/passwd" "$BED/etc/group" | grep -qx "$n"; do n=$((n + 1)); done
  echo "$n"
}

twin_gen_files() {
  local uid_c uid_i gid_p gid_pbs pw hash secret_hex secret_b32 h d tw="$BED/twins"
  log "twins: generating users, filesystems, ssh config"
  mkdir -p "$tw" "$TWIN_FS"/{home,work,epccfs,rds} "$PE"
  chmod 0755 "$tw" "$TWIN_FS" "$TWIN_FS"/* "$BED/shared/twins" "$PE"
  for d in "${TWIN_MOUNTS[@]}"; do     # mount points the laptop lacks (removed again by down)
    if [[ ! -e $d ]]; then mkdir "$d"; echo "$d" >>"$BED/run/twin-mkdirs"; fi
  done
  # --- users: crayuser (primary group t01, like a SAFE project), icuser; group pbsusers ---
  uid_c=$(free_id "$(( $(<"$BED/run/uid") + 1 ))")
  echo "$CRAY_USER:x:$uid_c:$uid_c:twin user (Cray EX)::/bin/bash" >>"$BED/etc/passwd"
  gid_p=$(free_id "$((uid_c + 1))")
  echo "$PROJECT:x:$gid_p:$CRAY_USER" >>"$BED/etc/group"
  sed -i "s|^$CRAY_USER:x:$uid_c:$uid_c:.*|$CRAY_USER:x:$uid_c:$gid_p:twin user (Cray EX):$CRAY_HOME:/bin/bash|" "$BED/etc/passwd"
  uid_i=$(free_id "$((gid_p + 1))")
  echo "$IC_USER:x:$uid_i:$uid_i:twin user (Imperial CX3):$IC_HOME:/bin/bash" >>"$BED/etc/passwd"
  echo "$IC_USER:x:$uid_i:" >>"$BED/etc/group"
  gid_pbs=$(free_id "$((uid_i + 1))")
  echo "pbsusers:x:$gid_pbs:$TUSER,$IC_USER" >>"$BED/etc/group"
  printf '%s\n%s\n' "$CRAY_USER" "$IC_USER" >"$BED/run/twin-users"
  mkdir -p "$tw/$CRAY_USER" "$tw/$IC_USER"
  chmod 0700 "$tw/$CRAY_USER" "$tw/$IC_USER"
  pw="tw-$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 14)"
  hash=$(printf '%s' "$pw" | /usr/bin/python3 -W ignore -c \
    'import crypt,sys; print(crypt.crypt(sys.stdin.read(), crypt.mksalt(crypt.METHOD_SHA512)))')
  echo "$CRAY_USER:*:19000:0:99999:7:::" >>"$BED/etc/shadow"
  echo "$IC_USER:$hash:19000:0:99999:7:::" >>"$BED/etc/shadow"
  printf '%s\n' "$pw" >"$tw/$IC_USER/password"
  secret_hex=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
  secret_b32=$(/usr/bin/python3 -c 'import base64,sys; print(base64.b32encode(bytes.fromhex(sys.argv[1])).decode())' "$secret_hex")
  printf 'HOTP/T30/6\t%s\t-\t%s\n' "$CRAY_USER" "$secret_hex" >>"$BED/etc/users.oath"
  printf '%s\n' "$secret_b32" >"$tw/$CRAY_USER/totp_secret"
  printf '%s\n' "$secret_hex" >"$tw/$CRAY_USER/totp_secret_hex"

  # --- filesystems: /home/t01/t01/crayuser (login only), /work and /epccfs (all), /rds (all) ---
  mkdir -p "$(twin_path "$CRAY_HOME")/.ssh" "$(twin_path "$CRAY_WORK")" "$(twin_path "$CRAY_EPCCFS")" \
    "$(twin_path "$IC_HOME")/.ssh"
  ssh-keygen -q -t ed25519 -N '' -C "laptop-twins@hpcj-testbed" -f "$tw/id_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C "$IC_USER@hpcj-testbed" -f "$(twin_path "$IC_HOME")/.ssh/id_ed25519"
  cp "$tw/id_ed25519.pub" "$(twin_path "$CRAY_HOME")/.ssh/authorized_keys"
  cat "$tw/id_ed25519.pub" "$(twin_path "$IC_HOME")/.ssh/id_ed25519.pub" >"$(twin_path "$IC_HOME")/.ssh/authorized_keys"
  cp "$HOMEDIR/.ssh/known_hosts" "$(twin_path "$IC_HOME")/.ssh/known_hosts"
  for d in "$CRAY_HOME" "$IC_HOME"; do
    cp /etc/skel/.bashrc /etc/skel/.profile /etc/skel/.bash_logout "$(twin_path "$d")/" 2>/dev/null || true
  done
  chown -R "$uid_c:$gid_p" "$(twin_path "$CRAY_HOME")" "$(twin_path "$CRAY_WORK")" "$(twin_path "$CRAY_EPCCFS")"
  chown -R "$uid_i:$uid_i" "$(twin_path "$IC_HOME")"
  chmod 0700 "$(twin_path "$CRAY_HOME")/.ssh" "$(twin_path "$IC_HOME")/.ssh"
  chmod 0750 "$(twin_path "$CRAY_HOME")"
  chmod 0700 "$(twin_path "$IC_HOME")"
  chmod 0600 "$(twin_path "$CRAY_HOME")/.ssh/authorized_keys" "$(twin_path "$IC_HOME")/.ssh/authorized_keys"
  # --- the Cray PE stand-in: modulecmd + `module` in login shells of crayuser on every host ---
  cp "$HERE/templates/twin-modulecmd.py" "$PE/modulecmd"
  chmod 0755 "$PE/modulecmd"
  for h in "${HOSTS[@]}"; do
    render "$HERE/templates/twin-modules.sh.in" "$BED/hosts/$h/etc/profile.d/hpcj-twin-modules.sh" \
      CRAY_USERS="$CRAY_USER" CX3_USERS="$IC_USER" PE="$PE"
  done
  # --- PBS: the emulator's spool is shared by hpcuser and icuser (group pbsusers) ---
  : >>"$BED/shared/pbs/spool/lock"    # the emulator's lock, shared by both users
  chgrp -R "$gid_pbs" "$BED/shared/pbs"
  chmod -R g+rwX "$BED/shared/pbs"
  find "$BED/shared/pbs" -type d -exec chmod g+s {} +
  for h in "${NODES[@]}"; do
    chgrp "$gid_pbs" "$BED/hosts/$h/pbs_mom"
    chmod 2770 "$BED/hosts/$h/pbs_mom"
    mkdir -p "$BED/hosts/$h/pbs_mom/aux"
    chmod 1777 "$BED/hosts/$h/pbs_mom/aux"
  done
  chmod a+w "$BED/faults/calls.log" "$BED/faults/.lock"
  # --- the laptop's ssh config for the site aliases (Include it, or ssh -F it) ---
  local kl
  kl=$(cut -d' ' -f1,2 "$BED/hosts/login/ssh/ssh_host_ed25519_key.pub")
  {
    echo "[$LOGIN_EXT_IP]:$PORT_MFA $kl"
    echo "[$LOGIN_EXT_IP]:$PORT_PW $kl"
  } >"$tw/known_hosts"
  cat >"$tw/ssh_config" <<EOF
# hpcjupyter test bed: site twins. Use: ssh -F $tw/ssh_config login.archer2.ac.uk
# (or 'Include $tw/ssh_config' at the top of an ssh config)
Host login.cirrus.ac.uk login.archer2.ac.uk
    HostName $LOGIN_EXT_IP
    Port $PORT_MFA
    User $CRAY_USER

Host login.cx3.hpc.imperial.ac.uk
    HostName $LOGIN_EXT_IP
    Port $PORT_PW
    User $IC_USER
    PubkeyAuthentication no
    PreferredAuthentications password,keyboard-interactive

Host login.cirrus.ac.uk login.archer2.ac.uk login.cx3.hpc.imperial.ac.uk
    IdentityFile $tw/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $tw/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    ConnectTimeout 10
EOF
  chmod 0644 "$tw/ssh_config" "$tw/known_hosts"
}

twin_path() { # the laptop's path of a twin site path (/home/..., /work/..., /epccfs/..., /rds/...)
  local p=$1 top=${1#/}
  top=${top%%/*}
  echo "$TWIN_FS/$top${p#/"$top"}"
}

# Runs CMD on the laptop in a private mount namespace where the twins' /work, /epccfs and /rds
# are mounted at their real paths: pip and venv write their absolute paths (shebangs, activate)
# as they are inside the bed, while the laptop keeps its network for the package index.
twin_ns() {
  # shellcheck disable=SC2016
  unshare --mount --propagation private -- /bin/bash -c \
    'set -e; for d in work epccfs rds; do mount --bind "$1/$d" "/$d"; done; shift; exec "$@"' \
    twin_ns "$TWIN_FS" "$@"
}

TWIN_PIECES=(cray-python cray-userbase epccfs-venv miniforge3)
twin_piece_path() {
  case $1 in
    cray-python) echo "$PE/python/3.11" ;;
    cray-userbase) twin_path "$CRAY_WORK/.local" ;;
    epccfs-venv) twin_path "$CRAY_EPCCFS/jupyter-venv" ;;
    miniforge3) twin_path "$IC_HOME/miniforge3" ;;
  esac
}

twin_software_start() {
  local parked="$CACHE/twins" stamp="$BED $JUPYTER_SPEC twins-v1" p
  if [[ -f $parked/.hpcj-stamp && "$(<"$parked/.hpcj-stamp")" == "$stamp" ]]; then
    for p in "${TWIN_PIECES[@]}"; do
      mkdir -p "$(dirname "$(twin_piece_path "$p")")"
      mv "$parked/$p" "$(twin_piece_path "$p")"
    done
    echo "$stamp" >"$BED/twins/software.stamp"
    rm -rf "$parked"
    log "twins: software restored from cache ($parked)"
    return 0
  fi
  rm -rf "$parked"
  log "twins: installing cray-python, JupyterLab (pip --user, /epccfs venv, conda env jupyter)"
  local spec
  read -r -a spec <<<"$JUPYTER_SPEC"
  (
    set -e
    export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
    py=$PE/python/3.11/bin/python
    # cray-python: a full Python 3.11 without Jupyter. A venv *with* system site packages, since
    # `pip install --user` refuses to run in an isolated venv (and Debian's own python3.11 is
    # marked externally managed).
    /usr/bin/python3.11 -m venv --system-site-packages "$PE/python/3.11"
    # conda base: a python and the conda shim; env `jupyter`: a venv with JupyterLab
    mf=$IC_HOME/miniforge3
    mkdir -p "$(twin_path "$mf")"/{bin,conda-meta,envs,etc/profile.d}
    install -m 0755 "$HERE/templates/twin-conda.sh" "$(twin_path "$mf")/bin/conda"
    ln -s /usr/bin/python3.11 "$(twin_path "$mf")/bin/python"
    echo "eval \"\$('$mf/bin/conda' shell.bash hook)\"" >"$(twin_path "$mf")/etc/profile.d/conda.sh"
    twin_ns env PYTHONUSERBASE="$CRAY_WORK/.local" "$py" -m pip install --user \
      --no-warn-script-location "${spec[@]}" >"$BED/logs/twins-userbase.log" 2>&1 &
    a=$!
    # shellcheck disable=SC2016
    twin_ns bash -c '"$1" -m venv --system-site-packages "$2" && "$2/bin/pip" install "${@:3}"' _ \
      "$py" "$CRAY_EPCCFS/jupyter-venv" "${spec[@]}" >"$BED/logs/twins-epccfs-venv.log" 2>&1 &
    b=$!
    # shellcheck disable=SC2016
    twin_ns bash -c '/usr/bin/python3.11 -m venv "$1" && "$1/bin/pip" install "${@:2}" && mkdir -p "$1/conda-meta"' _ \
      "$mf/envs/jupyter" "${spec[@]}" >"$BED/logs/twins-conda-env.log" 2>&1 &
    c=$!
    wait $a && wait $b && wait $c
    echo "$stamp" >"$BED/twins/software.stamp"
  ) </dev/null >"$BED/logs/twins-build.log" 2>&1 9<&- &
  echo $! >"$BED/run/twins-build.bgpid"
}

twin_software_wait() {
  local f="$BED/run/twins-build.bgpid" pid t=$EPOCHREALTIME
  if [[ -r $f ]]; then
    log "twins: waiting for the JupyterLab installs"
    pid=$(<"$f")
    wait "$pid" 2>/dev/null || true
    rm -f "$f"
  fi
  if [[ ! -f $BED/twins/software.stamp ]]; then
    tail -n 20 "$BED"/logs/twins-*.log >&2 || true
    die "twins: software install failed (see $BED/logs/twins-*.log)"
  fi
  local c i
  c=$(stat -c %u:%g "$(twin_path "$CRAY_WORK")")
  i=$(stat -c %u:%g "$(twin_path "$IC_HOME")")
  chown -R "$c" "$(twin_piece_path cray-userbase)" "$(twin_piece_path epccfs-venv)"
  chown -R "$i" "$(twin_piece_path miniforge3)"
  chmod -R a+rX "$PE"
  install -m 0755 -o "${i%:*}" -g "${i#*:}" "$HERE/templates/twin-conda.sh" "$(twin_piece_path miniforge3)/bin/conda"
  log "twins: software ready ($(since "$t")s waited)"
}

twin_accounting() {
  local a=(in_host login /usr/bin/sacctmgr -i)
  "${a[@]}" add qos standard,short,long,serial,gpu-shd >/dev/null
  "${a[@]}" add account "$PROJECT" Description="twin project" Organization=epcc >/dev/null
  "${a[@]}" add account "$BUDGET" Parent="$PROJECT" Description="twin budget" Organization=epcc >/dev/null
  "${a[@]}" add user "$CRAY_USER" Account="$PROJECT,$BUDGET" DefaultAccount="$BUDGET" >/dev/null
  "${a[@]}" modify user "$CRAY_USER" set QOS=normal,standard,short,long,serial,gpu-shd DefaultQOS=standard >/dev/null
}

twin_write_info() {
  local tw="$BED/twins"
  /usr/bin/python3 - "$tw/twins.json" <<PY
import json, sys
tw = "$tw"
info = {
    "ssh_config": f"{tw}/ssh_config", "known_hosts": f"{tw}/known_hosts",
    "identity_file": f"{tw}/id_ed25519",
    "cray": {
        "aliases": ["login.cirrus.ac.uk", "login.archer2.ac.uk"], "port": $PORT_MFA,
        "auth": "publickey + TOTP (pam_oath, the MFA sshd)",
        "user": "$CRAY_USER", "project": "$PROJECT", "budget": "$BUDGET",
        "totp_secret": open(f"{tw}/$CRAY_USER/totp_secret").read().strip(),
        "totp_secret_hex": open(f"{tw}/$CRAY_USER/totp_secret_hex").read().strip(),
        "totp_secret_file": f"{tw}/$CRAY_USER/totp_secret",
        "home": "$CRAY_HOME", "work": "$CRAY_WORK", "epccfs": "$CRAY_EPCCFS",
        "home_local": "$(twin_path "$CRAY_HOME")", "work_local": "$(twin_path "$CRAY_WORK")",
        "epccfs_local": "$(twin_path "$CRAY_EPCCFS")",
        "pythonuserbase": "$CRAY_WORK/.local", "epccfs_venv": "$CRAY_EPCCFS/jupyter-venv",
        "cray_python": "$PE/python/3.11/bin/python",
        "slurm_partitions": ["standard", "serial", "gpu"],
        "slurm_qos": ["standard", "short", "long", "serial", "gpu-shd"],
        "accounting": "$ACCOUNTING" == "1",
    },
    "imperial": {
        "aliases": ["login.cx3.hpc.imperial.ac.uk"], "port": $PORT_PW, "auth": "password",
        "user": "$IC_USER", "password": open(f"{tw}/$IC_USER/password").read().strip(),
        "password_file": f"{tw}/$IC_USER/password",
        "home": "$IC_HOME", "home_local": "$(twin_path "$IC_HOME")",
        "conda": "$IC_HOME/miniforge3", "conda_env": "jupyter",
        "remote_dir": "$IC_HOME/hpcjupyter",
    },
}
json.dump(info, open(sys.argv[1], "w"), indent=2)
PY
  chmod 0600 "$tw/twins.json"
}

twin_down() {  # park the twins' software in the cache, remove the mount points up created
  local purge=${1:-} p d stamp
  if [[ -f $BED/twins/software.stamp && $purge != --purge ]]; then
    stamp=$(<"$BED/twins/software.stamp")
    rm -rf "$CACHE/twins"
    mkdir -p "$CACHE/twins"
    for p in "${TWIN_PIECES[@]}"; do
      [[ -e $(twin_piece_path "$p") ]] && mv "$(twin_piece_path "$p")" "$CACHE/twins/$p"
    done
    echo "$stamp" >"$CACHE/twins/.hpcj-stamp"
  fi
  if [[ -r $BED/run/twin-mkdirs ]]; then
    while read -r d; do
      if [[ -d $d ]] && ! mountpoint -q "$d"; then rmdir "$d" 2>/dev/null || true; fi
    done <"$BED/run/twin-mkdirs"
  fi
}

# ---- description for tests ----------------------------------------------------------------------
write_info() {
  /usr/bin/python3 - "$BED" <<PY
import json, sys
bed = sys.argv[1]
info = {
    "dir": bed,
    "ssh_config": f"{bed}/laptop/ssh_config",
    "known_hosts": f"{bed}/laptop/known_hosts",
    "identity_file": f"{bed}/laptop/id_ed25519",
    "login_alias": "tb-login", "mfa_alias": "tb-login-mfa", "pw_alias": "tb-login-pw",
    "user": "$TUSER", "uid": int(open(f"{bed}/run/uid").read()),
    "password": open(f"{bed}/laptop/password").read().strip(),
    "totp_secret": open(f"{bed}/laptop/totp_secret").read().strip(),
    "totp_secret_hex": open(f"{bed}/laptop/totp_secret_hex").read().strip(),
    "oath_window": $OATH_WINDOW,
    "nodes": ["node1", "node2"],
    "shared": f"{bed}/shared",
    "home": "$HOMEDIR",
    "remote_dir": "$HOMEDIR/hpcj-jobs",
    "jupyter_venv": "$VENV",
    "pbs_server": "$PBS_SERVER",
    "accounting": open(f"{bed}/run/accounting").read().strip() == "1",
    "twins": open(f"{bed}/run/twins").read().strip() == "1",
    "twins_json": f"{bed}/twins/twins.json",
    "slurm_partitions": ["serial", "standard"],
    "pbs_queues": ["workq", "v1_small72", "v1_medium72", "v1_gpu72"],
    "addresses": {"laptop": "$LAPTOP_IP", "login": "$LOGIN_EXT_IP", "login_internal": "$LOGIN_IP",
                  "node1": "$NODE1_IP", "node2": "$NODE2_IP", "range": "$RANGE"},
    "ports": {"login": $PORT_KEY, "mfa": $PORT_MFA, "pw": $PORT_PW},
    "sshd_logs": {n: f"{bed}/logs/sshd-{n}.log" for n in ("login", "mfa", "pw", "node1", "node2")},
    "faults_dir": f"{bed}/faults",
    "calls_log": f"{bed}/faults/calls.log",
    "testbed_sh": "$SELF",
}
with open(f"{bed}/testbed.json", "w") as f:
    json.dump(info, f, indent=2)
PY
  chmod 0600 "$BED/testbed.json"
}

# ---- commands ----------------------------------------------------------------------------------
bed_users() {  # the users of the bed's private passwd (hpcuser, and the twin users with --twin)
  echo "$TUSER"
  if [[ -r $BED/run/twin-users ]]; then cat "$BED/run/twin-users"; fi
}

# Does every host still see the bed's user database? Prints what is wrong; 0 when all is fine.
users_check() {
  local h u rc=0 pid
  for h in "${HOSTS[@]}"; do
    pid=$(holder_pid "$h") || continue
    for u in $(bed_users); do
      if ! nsenter -t "$pid" -u -m -n -- getent passwd "$u" >/dev/null 2>&1; then
        if nsenter -t "$pid" -m -- mountpoint -q /etc 2>/dev/null; then
          echo "host $h: user database BROKEN: user '$u' is unknown although the bed's private /etc is mounted (is $BED/etc/passwd, or the symlink $BED/hosts/$h/etc/passwd to it, intact?). Logins as $u fail (\"Permission denied (publickey)\"). Fix: testbed.sh down && testbed.sh up"
        else
          echo "host $h: user database GONE: the bed's private /etc is no longer mounted on /etc (unmounted or detached), so $h sees the laptop's /etc/passwd without '$u' and every login fails with \"Permission denied (publickey)\". Fix: testbed.sh down && testbed.sh up"
        fi
        rc=1
        break
      fi
    done
  done
  return $rc
}

healthy() {
  local h n
  [[ -f $BED/run/up ]] || return 1
  for h in "${HOSTS[@]}"; do holder_pid "$h" >/dev/null || return 1; done
  pid_alive "$BED/run/munged.pid" || return 1
  pid_alive "$BED/run/slurmctld.pid" || return 1
  for h in "${NODES[@]}"; do pid_alive "$BED/run/slurmd-$h.pid" || return 1; done
  for n in "${SSHD_NAMES[@]}"; do pid_alive "$BED/run/sshd-$n.pid" || return 1; done
  [[ -f $VENV/.hpcj-stamp ]] || return 1
  [[ "$(cat "$BED/run/accounting" 2>/dev/null)" == "$ACCOUNTING" ]] || return 1
  users_check >/dev/null || return 1
  [[ "$(cat "$BED/run/twins" 2>/dev/null)" == "$TWINS" ]] || return 1
  if [[ $TWINS == 1 ]]; then [[ -f $BED/twins/twins.json ]] || return 1; fi
  if [[ $ACCOUNTING == 1 ]]; then
    pid_alive "$BED/run/mariadb.pid" || return 1
    pid_alive "$BED/run/slurmdbd.pid" || return 1
  fi
  return 0
}

# The namespaces have fixed names, so one bed per machine: if they belong to a bed in another
# directory that still exists, refuse instead of tearing that bed down.
foreign_owner() {
  local pid owner
  for pid in $(ip netns pids "${NS_PREFIX}login" 2>/dev/null); do
    owner=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^HPCJ_TESTBED_DIR=//p' | head -1)
    if [[ -n $owner && $owner != "$BED" && -d $owner ]]; then
      echo "$owner"
      return 0
    fi
  done
  return 1
}

cmd_up() {
  need_root
  if [[ ${1:-} == --twin ]]; then TWINS=1; elif [[ -n ${1:-} ]]; then die "usage: testbed.sh up [--twin]"; fi
  export HPCJ_TESTBED_TWINS=$TWINS
  if [[ $TWINS == 1 ]]; then
    NODE_CPUS=$TWIN_NODE_CPUS NODE_MEM_MB=$TWIN_NODE_MEM_MB
    PBS_NODE_CPUS=$TWIN_PBS_NODE_CPUS PBS_NODE_MEM=$TWIN_PBS_NODE_MEM
  fi
  local t0=$EPOCHREALTIME
  if healthy; then log "test bed already up at $BED"; return 0; fi
  local other
  if other=$(foreign_owner); then
    die "another test bed is running (HPCJ_TESTBED_DIR=$other): take it down first"
  fi
  if [[ -e $BED ]] || ip netns list 2>/dev/null | grep -q "^$NS_PREFIX" || ip link show "$LAP_IF" >/dev/null 2>&1; then
    log "leftovers of a previous test bed found: tearing down first"
    cmd_down
  fi
  for b in ip nsenter unshare sshd ssh ssh-keygen munged slurmctld slurmd sbatch flock; do
    command -v "$b" >/dev/null || die "missing $b: run tests/cluster/deps.sh"
  done
  if [[ $TWINS == 1 ]]; then twin_preflight; fi
  if [[ $ACCOUNTING == 1 ]]; then
    for b in slurmdbd mariadbd mariadb-install-db; do
      command -v "$b" >/dev/null || die "missing $b: run HPCJ_TESTBED_ACCOUNTING=1 tests/cluster/deps.sh"
    done
  fi
  [[ -f /lib/x86_64-linux-gnu/security/pam_oath.so || -n "$(find /lib /usr/lib -name pam_oath.so 2>/dev/null | head -1)" ]] \
    || die "missing pam_oath.so: run tests/cluster/deps.sh"
  log "bringing up test bed in $BED"
  mkdir -p "$BED/run" "$BED/logs" "$BED/shared"
  trap up_failed EXIT
  venv_start                    # long part (pip) runs while the rest starts
  gen_files
  if [[ $TWINS == 1 ]]; then twin_gen_files; twin_software_start; fi
  net_up
  start_holders
  start_munge
  start_slurm
  local n
  for n in "${SSHD_NAMES[@]}"; do start_sshd "$n"; done
  if [[ $TWINS == 1 && $ACCOUNTING == 1 ]]; then twin_accounting; fi
  write_info
  log "waiting for the JupyterLab venv"
  venv_wait
  if [[ $TWINS == 1 ]]; then twin_software_wait; twin_write_info; fi
  log "checking ssh from the laptop"
  wait_for 15 "ssh tb-login" ssh -F "$BED/laptop/ssh_config" -o BatchMode=yes tb-login true
  ssh -F "$BED/laptop/ssh_config" -o BatchMode=yes -J tb-login node1 true \
    || die "ssh -J tb-login node1 failed"
  date +%s >"$BED/run/up"
  trap - EXIT
  log "test bed up in $(since "$t0")s: ssh -F $BED/laptop/ssh_config tb-login"
}

# A failed `up` shows the ends of the logs, then takes everything down again (so nothing is
# left behind); HPCJ_TESTBED_KEEP_FAILED=1 keeps the broken bed for inspection.
up_failed() {
  local rc=$? f
  trap - EXIT
  echo "testbed: up failed (exit $rc); last lines of the logs:" >&2
  for f in "$BED"/logs/*; do
    [[ -s $f ]] || continue
    echo "--- $f" >&2
    tail -n 15 "$f" >&2
  done
  if [[ ${HPCJ_TESTBED_KEEP_FAILED:-0} == 1 ]]; then
    echo "testbed: HPCJ_TESTBED_KEEP_FAILED=1: leaving the broken bed in $BED" >&2
  else
    cmd_down || true
  fi
  exit "$rc"
}

kill_ns_procs() {
  local sig=$1 h pids=""
  for h in "${HOSTS[@]}"; do
    if [[ -e /run/netns/$NS_PREFIX$h ]]; then
      pids+=" $(ip netns pids "$NS_PREFIX$h" 2>/dev/null | tr '\n' ' ')"
    fi
  done
  pids=$(xargs <<<"$pids")
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086
    kill "-$sig" $pids 2>/dev/null || true
    return 0
  fi
  return 1
}

ns_has_procs() {
  local h
  for h in "${HOSTS[@]}"; do
    [[ -e /run/netns/$NS_PREFIX$h && -n "$(ip netns pids "$NS_PREFIX$h" 2>/dev/null)" ]] && return 0
  done
  return 1
}

cmd_down() {
  need_root
  local purge=${1:-} h f pid preexisting=yes i other
  if other=$(foreign_owner); then
    die "the running test bed belongs to HPCJ_TESTBED_DIR=$other, not $BED: not touching it"
  fi
  log "tearing down test bed at $BED"
  # helpers started on the laptop side (venv build, link-down timers)
  for f in "$BED"/run/*.bgpid; do
    [[ -r $f ]] || continue
    pid=$(<"$f")
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  # every process inside the hosts: TERM, up to 5 s grace, then KILL
  if kill_ns_procs TERM; then
    for ((i = 0; i < 50; i++)); do
      ns_has_procs || break
      sleep 0.1
    done
    kill_ns_procs KILL || true
    for ((i = 0; i < 50; i++)); do
      ns_has_procs || break
      sleep 0.1
    done
  fi
  [[ -r $BED/run/run-netns-preexisting ]] && preexisting=$(<"$BED/run/run-netns-preexisting")
  for h in "${HOSTS[@]}"; do
    if [[ -e /run/netns/$NS_PREFIX$h ]]; then ip netns del "$NS_PREFIX$h" || true; fi
  done
  ip link del "$LAP_IF" 2>/dev/null || true
  if ip -4 route show "$RANGE" | grep -q '^unreachable'; then ip route del unreachable "$RANGE"; fi
  if [[ $preexisting == no && -d /run/netns && -z "$(ls -A /run/netns 2>/dev/null)" ]]; then
    while mountpoint -q /run/netns; do umount /run/netns || break; done
    rmdir /run/netns 2>/dev/null || true
  fi
  # never rm -rf through a mount
  if grep -q " ${BED}[/ ]" /proc/self/mountinfo; then
    die "mounts under $BED remain in the root namespace: $(grep " ${BED}[/ ]" /proc/self/mountinfo | cut -d' ' -f5 | tr '\n' ' ')"
  fi
  twin_down "$purge"
  if [[ -f $VENV/.hpcj-stamp && $purge != --purge ]]; then
    mkdir -p "$CACHE"
    rm -rf "$CACHE/jupyter-venv"
    mv "$VENV" "$CACHE/jupyter-venv"
  fi
  rm -rf "$BED"
  if [[ $purge == --purge ]]; then rm -rf "$CACHE"; fi
  log "test bed down"
}

cmd_status() {
  local h n rc=0
  echo "test bed dir: $BED"
  for h in "${HOSTS[@]}"; do
    if pid=$(holder_pid "$h"); then echo "host $h: up (holder pid $pid)"; else echo "host $h: DOWN"; rc=1; fi
  done
  local names=(munged slurmctld slurmd-node1 slurmd-node2 sshd-login sshd-mfa sshd-pw sshd-node1 sshd-node2)
  if [[ "$(cat "$BED/run/accounting" 2>/dev/null)" == 1 ]]; then names+=(mariadb slurmdbd); fi
  for n in "${names[@]}"; do
    if pid_alive "$BED/run/$n.pid"; then echo "$n: running (pid $(<"$BED/run/$n.pid"))"; else echo "$n: NOT running"; rc=1; fi
  done
  if [[ "$(cat "$BED/run/twins" 2>/dev/null)" == 1 ]]; then
    if [[ -f $BED/twins/twins.json ]]; then echo "twins: up ($BED/twins/ssh_config, $BED/twins/twins.json)"
    else echo "twins: INCOMPLETE (no $BED/twins/twins.json)"; rc=1; fi
  fi
  if users_check; then echo "users ($(bed_users | xargs)): known on every host"; else rc=1; fi
  if [[ -f $VENV/.hpcj-stamp ]]; then echo "jupyter venv: $VENV"; else echo "jupyter venv: missing"; rc=1; fi
  if holder_pid login >/dev/null 2>&1; then in_host login /usr/bin/sinfo 2>&1 || rc=1; fi
  [[ -f $BED/run/up ]] || { echo "(up not completed)"; rc=1; }
  return $rc
}

cmd_exec() {
  need_root
  [[ $# -ge 2 ]] || die "usage: testbed.sh exec HOST CMD..."
  local h=$1
  shift
  in_host "$h" env -i PATH="$SYS_PATH" HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" "$@"
}

cmd_link_down() {
  # link-down SECONDS [unreachable|blackhole]
  #   unreachable (default): the laptop's end goes down; its link route goes with it, so the
  #     laptop's packets to login fail at once with "No route to host" (like losing Wi-Fi).
  #   blackhole: login's end goes down; the laptop still routes into the link and packets are
  #     silently dropped, so connections hang until timeouts (like an outage further away).
  need_root
  local secs=${1:?usage: link-down SECONDS [unreachable|blackhole]} mode=${2:-unreachable}
  local -a ipcmd
  case $mode in
    unreachable) ipcmd=(ip link set "$LAP_IF") ;;
    blackhole) ipcmd=(ip -n "${NS_PREFIX}login" link set ext0) ;;
    *) die "link-down mode must be unreachable or blackhole" ;;
  esac
  echo $$ >"$BED/run/link-down-$$.bgpid"
  # shellcheck disable=SC2064
  trap "link_restore ${ipcmd[*]}; rm -f '$BED/run/link-down-$$.bgpid'" EXIT
  trap 'exit 0' TERM INT
  "${ipcmd[@]}" down
  sleep "$secs" &
  wait $!
}

link_restore() {  # link_restore IPCMD... : bring the link back and wait until it carries traffic
  "$@" up 2>/dev/null || return 0
  local i
  for ((i = 0; i < 50; i++)); do
    [[ $(ip -br link show "$LAP_IF" 2>/dev/null | awk '{print $2}') == UP ]] && break
    sleep 0.05
  done
  # forget the failed ARP entry from the outage, so the next packet resolves afresh
  ip neigh flush dev "$LAP_IF" 2>/dev/null || true
  ip -n "${NS_PREFIX}login" neigh flush dev ext0 2>/dev/null || true
}

cmd_restart_sshd() {
  need_root
  local name=${1:?usage: restart-sshd login|mfa|pw|node1|node2}
  sshd_cmd "$name" >/dev/null
  stop_sshd "$name"
  start_sshd "$name"
}

cmd_fail_next() {
  need_root
  local cmd=${1:?usage: fail-next CMD N [MESSAGE]} n=${2:?usage: fail-next CMD N [MESSAGE]} msg=${3:-}
  echo "$n" >"$BED/faults/$cmd.fail"
  if [[ -n $msg ]]; then echo "$msg" >"$BED/faults/$cmd.fail.msg"; else rm -f "$BED/faults/$cmd.fail.msg"; fi
  chown "$(<"$BED/run/uid")" "$BED/faults/$cmd.fail"*
}

cmd_calls() {
  if [[ -n ${1:-} ]]; then awk -v c="$1" '$2 == c' "$BED/faults/calls.log" | wc -l
  else awk '{print $2}' "$BED/faults/calls.log" | sort | uniq -c; fi
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    up) exec 9<"$SELF"; flock 9; cmd_up "$@" ;;
    down) exec 9<"$SELF"; flock 9; cmd_down "$@" ;;
    status) cmd_status ;;
    exec) cmd_exec "$@" ;;
    link-down) cmd_link_down "$@" ;;
    restart-sshd) cmd_restart_sshd "$@" ;;
    fail-next) cmd_fail_next "$@" ;;
    calls) cmd_calls "$@" ;;
    _hostinit) hostinit "$@" ;;
    *) sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'; [[ -z $cmd ]] || exit 2 ;;
  esac
}

main "$@"
