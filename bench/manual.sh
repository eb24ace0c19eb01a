#!/bin/bash
# The seeds' manual way as a plain script: write a batch script, sbatch it, poll squeue until it
# runs, read Jupyter's URL from the job's output, `ssh -L` to it, check it answers.
# Every ssh is a login of its own (no ControlMaster), as a user typing these commands does.
# It polls eagerly (squeue every 2 s, the same cadence as the test-bed profile), so it is the
# fast end of the manual way. Ctrl-C/TERM cancels the job and closes the tunnel.
#
# Environment: SSH_CONFIG HOST VENV JOB_DIR (shared fs) JOB_NAME LPORT
set -euo pipefail
remote() { ssh -F "$SSH_CONFIG" -o BatchMode=yes "$HOST" "$@"; }

job="" tunnel=""
cleanup() {
  if [ -n "$tunnel" ]; then kill "$tunnel" 2>/dev/null || true; fi
  if [ -n "$job" ]; then remote "scancel $job; rm -rf $JOB_DIR" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

remote "mkdir -p $JOB_DIR && cat > $JOB_DIR/job.sh" <<EOF
#!/bin/bash
#SBATCH -J $JOB_NAME
#SBATCH -p serial
#SBATCH -t 00:30:00
#SBATCH -o $JOB_DIR/slurm.out
source $VENV/bin/activate
export JUPYTER_RUNTIME_DIR=$JOB_DIR/runtime
jupyter lab --no-browser --ip=\$(hostname)
EOF
job=$(remote sbatch --parsable "$JOB_DIR/job.sh")
echo "job $job"

until [ "$(remote squeue -h -j "$job" -o %T)" = RUNNING ]; do sleep 2; done
url=""
until [ -n "$url" ]; do
  sleep 1
  url=$(remote "grep -o 'http://[^ ]*token=[0-9a-f]*' $JOB_DIR/slurm.out | grep -v 127.0.0.1 | head -1" || true)
done
hostport=${url#http://}; hostport=${hostport%%/*}; token=${url##*token=}

ssh -F "$SSH_CONFIG" -o BatchMode=yes -o ExitOnForwardFailure=yes -N -L "127.0.0.1:$LPORT:$hostport" "$HOST" &
tunnel=$!
until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: token $token" "http://127.0.0.1:$LPORT/api/status")" = 200 ]; do
  sleep 0.1
done
echo "http://127.0.0.1:$LPORT/lab?token=$token"
wait "$tunnel"
