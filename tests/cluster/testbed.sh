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
OATH_WINDOW=5
ACCOUNTING=${HPCJ_TESTBED_ACCOUNTING:-0}   # 1: slurmdbd + MariaDB, so that sacct answers
JUPYTER_SPEC=${HPCJ_TESTBED_JUPYTER_SPEC:-jupyterlab}   # pip requirement(s), space separated
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

HOMEDIR="$BED/shared/home/$TUSER"
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
  if [[ $ACCOUNTING == 1 ]]; then
    render "$HERE/templates/slurm.conf.in" "$BED/etc/slurm/slurm.conf" \
      ACCT_TYPE=accounting_storage/slurmdbd ACCT_HOST_LINE="AccountingStorageHost=login" \
      ACCT_PASS_LINE="AccountingStoragePass=$BED/shared/munge/munge.socket"
    render "$HERE/templates/slurmdbd.conf.in" "$BED/etc/slurm/slurmdbd.conf"
    chmod 0600 "$BED/etc/slurm/slurmdbd.conf"
  else
    render "$HERE/templates/slurm.conf.in" "$BED/etc/slurm/slurm.conf" \
      ACCT_TYPE=accounting_storage/none ACCT_HOST_LINE="# (no AccountingStorageHost)" \
      ACCT_PASS_LINE="# (no AccountingStoragePass)"
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
      HOSTKEY="$BED/hosts/$host/ssh/ssh_host_ed25519_key" PIDFILE="$BED/run/sshd-$name.pid"
    cat "$BED/run/sshd-common.tmp" >>"$BED/etc/ssh/sshd-$name.conf"
    rm -f "$BED/run/sshd-common.tmp"
    : >"$BED/logs/sshd-$name.log"
  done

  # --- PBS emulator (server side on login, mom side run on the nodes over ssh) ---
  cp "$HERE"/pbs/pbsemu.py "$HERE"/pbs/qsub "$HERE"/pbs/qstat "$HERE"/pbs/qdel "$HERE"/pbs/qrls \
    "$BED/pbs/bin/"
  chmod 0755 "$BED"/pbs/bin/q*
  /usr/bin/python3 - "$BED" "$PBS_SERVER" "$NODE_CPUS" <<'PY'
import json, sys
bed, server, cpus = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = {
    "server": server,
    "submit_host": "login",
    "pbs_version": "23.06.06",
    "spool": f"{bed}/shared/pbs/spool",
    "mom_spool": f"{bed}/hosts/{{node}}/pbs_mom",
    "nodes": {n: {"ncpus": cpus, "mem": "64gb", "ngpus": 0} for n in ("node1", "node2")},
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
  qsub|qstat|qdel|qrls) exec $BED/pbs/bin/\$name "\$@" ;;
  *) exec /usr/bin/\$name "\$@" ;;
esac
EOF
  chmod 0755 "$BED/bin/hpcj-wrap"
  for n in squeue sacct scontrol sbatch scancel sinfo qsub qstat qdel qrls; do
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
    "nodes": ["node1", "node2"],
    "shared": f"{bed}/shared",
    "home": "$HOMEDIR",
    "remote_dir": "$HOMEDIR/hpcj-jobs",
    "jupyter_venv": "$VENV",
    "pbs_server": "$PBS_SERVER",
    "accounting": open(f"{bed}/run/accounting").read().strip() == "1",
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
  net_up
  start_holders
  start_munge
  start_slurm
  local n
  for n in "${SSHD_NAMES[@]}"; do start_sshd "$n"; done
  write_info
  log "waiting for the JupyterLab venv"
  venv_wait
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
    up) exec 9<"$SELF"; flock 9; cmd_up ;;
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
