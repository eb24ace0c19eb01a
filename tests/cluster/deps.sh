#!/usr/bin/env bash
# Install what the mini-cluster test bed needs (Debian 12, as root). Idempotent: when every
# package is already installed it does nothing (no apt-get update either).
#
#   tests/cluster/deps.sh            # install missing packages
#   tests/cluster/deps.sh --check    # exit 1 and list what is missing, install nothing
#
# With HPCJ_TESTBED_ACCOUNTING=1 it also installs slurmdbd and MariaDB (optional Slurm
# accounting, so that sacct answers; see README.md).
set -euo pipefail

PACKAGES=(
  slurm-wlm munge                       # Slurm 22.05: slurmctld, slurmd, client commands
  openssh-server openssh-client         # sshd on every host, ssh on the laptop and the login host
  libpam-oath oathtool                  # TOTP second factor for the MFA login sshd
  iproute2 util-linux procps psmisc     # ip netns/veth, nsenter/unshare/flock, ps/pkill/fuser
  python3 python3-venv                  # PBS emulator, JupyterLab venv on the shared fs
  chromium                              # headless browser for the e2e tests
  tmux git shellcheck                   # terminal-driving, repo, script lint
)
if [[ ${HPCJ_TESTBED_ACCOUNTING:-0} == 1 ]]; then
  PACKAGES+=(slurmdbd mariadb-server)   # optional: Slurm accounting (sacct)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [[ "${1:-}" == "--check" ]]; then
  if ((${#missing[@]})); then echo "missing: ${missing[*]}"; exit 1; fi
  echo "all test-bed packages installed"; exit 0
fi

if ((${#missing[@]} == 0)); then
  echo "deps.sh: all test-bed packages already installed"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "deps.sh: must run as root to install: ${missing[*]}" >&2
  exit 1
fi

# Package maintainer scripts must not start munged/sshd/slurm* in the root namespace (the
# laptop): the test bed starts its own daemons inside its namespaces. policy-rc.d is the
# standard Debian way to say so; we only add it if none exists and remove it afterwards.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  added_policy=1
fi
cleanup() { if ((added_policy)); then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "deps.sh: installing ${missing[*]}"
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
