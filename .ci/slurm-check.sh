#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, and four checks of `nequil slurm` on it:
#   (a) submit and merge: the job array's runs.csv equals the unsharded local sweep's;
#   (b) preemption: an array task cancelled mid-run, the same script submitted again: every run
#       present once, bit-identical to (a), and the runs finished before not run again;
#   (b2) two copies at once: the array submitted twice at once into one directory: every run
#       executed once (the run locks), bit-identical to (a);
#   (c) time limit: tasks killed by Slurm at their --time, resubmitted with enough time: nothing
#       lost, bit-identical to a local sweep;
#   (d) clean end: nothing left in squeue, no process of the test left running.
#
#   .ci/slurm-check.sh          (as root; ~4 minutes on 2 cores, plus the install the first time)
#
# Installs Debian's slurm-wlm and munge with apt-get when they are missing. Everything else lives
# in a temporary directory: the configuration, a munge key and socket, the daemons' state, logs
# and pid files, the sweeps. munged, slurmctld and slurmd run as children of this script and are
# stopped by their pids on exit (also on failure or interruption). The cluster's one node is this
# machine, with at least 8 CPUs declared even on 2 cores (SlurmdParameters=config_overrides) so
# that all array tasks of each check run at once. Uses target/release/nequil (built when missing), or
# $NEQUIL. NEQUIL_SKIP_SLURM=1 skips the check.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$SECONDS
say() { printf 'slurm-check [%3ds]: %s\n' $((SECONDS - T0)) "$*"; }

if [ "${NEQUIL_SKIP_SLURM:-0}" = 1 ]; then
  say "skipped (NEQUIL_SKIP_SLURM=1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  say "FAIL: needs root (slurmd runs jobs as their users; the install uses apt-get); NEQUIL_SKIP_SLURM=1 skips it"
  exit 1
fi

NEQUIL=${NEQUIL:-$ROOT/target/release/nequil}
if [ ! -x "$NEQUIL" ]; then
  say "building $NEQUIL"
  cargo build --release --quiet
fi
NEQUIL=$(realpath "$NEQUIL")

WORK=$(mktemp -d /tmp/nequil-slurm.XXXXXX)
PIDS=()           # daemons, in start order
BG=()             # other commands this script waits for (sbatch --wait, local sweeps)
POLICY_RC=""      # set while a temporary /usr/sbin/policy-rc.d of ours exists
FAILED=0

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$POLICY_RC" ]; then rm -f "$POLICY_RC"; fi
  for pid in "${BG[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  if [ "${#PIDS[@]}" -gt 0 ]; then
    # Jobs first (their processes are slurmstepd's, not ours), while the daemons still run.
    if kill -0 "${PIDS[1]:-0}" 2>/dev/null; then
      scancel --quiet --full --user="$(id -un)" 2>/dev/null
      for _ in $(seq 1 50); do
        [ -z "$(squeue -h 2>/dev/null)" ] && break
        sleep 0.2
      done
    fi
    # Any other process of the test still alive (by pid; commands naming the temporary directory).
    for pid in $(test_pids); do
      kill -KILL "$pid" 2>/dev/null
    done
    if [ "$rc" -ne 0 ]; then
      for f in "$WORK"/log/slurmctld.log "$WORK"/log/slurmd.log "$WORK"/log/munged.log; do
        [ -f "$f" ] && { echo "---- $f (last 60 lines)"; tail -n 60 "$f"; }
      done
      for f in "$WORK"/jobs/*/slurm-*.out; do
        [ -f "$f" ] && { echo "---- $f"; tail -n 20 "$f"; }
      done
    fi
    # Daemons in reverse order: slurmd, slurmctld, munged.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      kill -TERM "${PIDS[i]}" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    done
  fi
  rm -rf "$WORK"
  if [ "$rc" -eq 0 ]; then
    say "done in $((SECONDS - T0)) s"
  else
    say "FAILED (exit $rc) after $((SECONDS - T0)) s"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Processes whose command line names the temporary directory, except the daemons (munged).
test_pids() {
  local pid
  for pid in $(pgrep -f "$WORK" 2>/dev/null); do
    [[ " ${PIDS[*]} " == *" $pid "* ]] || echo "$pid"
  done
}

pass() { say "PASS $*"; }
fail() {
  say "FAIL $*"
  FAILED=1
}
die() {
  say "FAIL $*"
  exit 1
}

# Runs CMD... in the background and waits for it, so that a signal to this script is handled at
# once (bash runs traps only between foreground commands), and the cleanup can stop it by pid.
bg_wait() {
  "$@" &
  BG+=($!)
  wait "$!"
}
# sbatch_wait DIR SCRIPT: sbatch --wait from DIR (the tasks' logs land there). Only in the
# background (bg_wait, &): it replaces its shell by sbatch, so that its pid is sbatch's.
sbatch_wait() { cd "$1" && exec sbatch --wait --quiet "$2"; }

# wait_for WHAT SECONDS CMD...: polls CMD every 0.1 s until it succeeds; fails after SECONDS.
wait_for() {
  local what=$1 timeout=$2
  shift 2
  local start=$SECONDS
  say "waiting for $what (at most ${timeout} s)"
  until "$@"; do
    if ((SECONDS - start >= timeout)); then
      die "timed out after ${timeout} s waiting for $what"
    fi
    sleep 0.1
  done
}

# ---------------------------------------------------------------- install
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
  ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packages' scripts from starting system services: this script runs its own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    POLICY_RC=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
  fi
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } \
    >"$WORK/apt.log" 2>&1; then
    cat "$WORK/apt.log"
    die "apt-get install slurm-wlm munge"
  fi
  if [ -n "$POLICY_RC" ]; then
    rm -f "$POLICY_RC"
    POLICY_RC=""
  fi
fi
say "$(slurmctld -V), munge $(munged --version 2>&1 | awk '{print $2; exit}')"

# ---------------------------------------------------------------- munge
mkdir -p "$WORK"/{munge,log,state,spool,jobs}
chmod 700 "$WORK/munge"
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
SOCK=$WORK/munge/munge.socket
munged --foreground --force --key-file="$WORK/munge/munge.key" --socket="$SOCK" \
  --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/log/munged.log" \
  --seed-file="$WORK/munge/munged.seed" >"$WORK/log/munged.out" 2>&1 &
PIDS+=($!)
munge_ok() { munge -n -S "$SOCK" 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1; }
wait_for "munged to answer on $SOCK" 15 munge_ok

# ---------------------------------------------------------------- slurm
HOST=$(hostname -s)
MEM_MIB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
MEM_MIB=$((MEM_MIB - MEM_MIB / 10 - 256)) # a margin: slurmd refuses a node with more than it sees
NCPU=$(nproc)
CPUS=$((NCPU > 8 ? NCPU : 8))
export SLURM_CONF=$WORK/slurm.conf
cat >"$SLURM_CONF" <<EOF
# One-node test cluster of .ci/slurm-check.sh (Slurm $(slurmctld -V | awk '{print $2}')).
ClusterName=nequil-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# All array tasks of a check (8 in (b2)) run at once, even on fewer cores.
SlurmdParameters=config_overrides
# SIGKILL 5 s after the SIGTERM of a cancel or time-out (default 30).
KillWait=5
# Finished jobs stay listed >= 4 s: sbatch --wait then polls every 2 s (it slows down to 32 s
# when MinJobAge allows).
MinJobAge=4
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MIB State=UNKNOWN
PartitionName=ci Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i >"$WORK/log/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D >"$WORK/log/slurmd.out" 2>&1 &
PIDS+=($!)
node_idle() { [ "$(sinfo -h -n "$HOST" -o %t 2>/dev/null)" = idle ]; }
wait_for "node $HOST idle in sinfo" 60 node_idle
say "cluster up: node $HOST, $CPUS CPUs ($NCPU cores), ${MEM_MIB} MiB; partition ci"

# ---------------------------------------------------------------- helpers
# A sweep spec: a 10-20-10 linear net, 4 learning rates × 4 seeds (or the seeds $3), $2 steps
# per run.
write_spec() {
  cat >"$1" <<EOF
seed = 0
[model]
kind = "linear"
widths = [10, 20, 10]
[data]
x_cov = { phi = 0.25 }
noise_cov = { scalar = 1.0 }
[train]
batch_size = 1
lr = 0.01
steps = $2
[probes]
log_points = 5
eval_samples = 256
[sweep]
"train.lr" = [0.01, 0.005, 0.003, 0.001]
seed = ${3:-[0, 1, 2, 3]}
EOF
}

# Submits a batch script from its own directory (logs land there); prints the job id.
submit() { (cd "$(dirname "$1")" && sbatch --parsable "${@:2}" "$1") | cut -d';' -f1; }
# Whether job $1 (all its array tasks) has left the queue.
job_gone() { [ -z "$(squeue -h -j "$1" -t PD,R,CG,CF,S,RQ,RS 2>/dev/null)" ]; }
# Whether array task $1_$2 is running.
task_running() { [ "$(squeue -h -j "$1_$2" -o %T 2>/dev/null)" = RUNNING ]; }

# Run directories (not lock files) under $1/runs.
run_dirs() { find "$1/runs" -mindepth 1 -maxdepth 1 -type d -name 'run-*' -printf '%f\n' | sort; }
# Run directories with params.json but no status.json: started, unfinished.
unfinished() {
  local d
  for d in "$1"/runs/run-*/; do
    [ -f "$d/params.json" ] && [ ! -f "$d/status.json" ] && basename "$d"
  done
  return 0
}
# status.json of every finished run: "id checksum" lines (status.json holds the wall time, so a
# run done again would change it).
status_sums() {
  local d
  for d in "$1"/runs/run-*/; do
    [ -f "$d/status.json" ] && echo "$(basename "$d") $(cksum <"$d/status.json")"
  done
  return 0
}
# Whether every line of $1 (status_sums taken before) is still in status_sums of $2: the runs
# finished then were not run again.
untouched() {
  local now line
  now=$(status_sums "$2")
  while read -r line; do
    [ -z "$line" ] && continue
    grep -qxF "$line" <<<"$now" || return 1
  done <<<"$1"
}

# Every run of $1 exactly once, no lock left, and bit-identical to the local sweep $2
# (runs.csv, and each run's metrics.csv and final.safetensors).
same_as_local() {
  local got=$1 ref=$2 what=$3 id ok=1
  if ! "$NEQUIL" merge "$got" --quiet; then
    fail "$what: nequil merge $got"
    return 1
  fi
  if ! cmp -s "$got/runs.csv" "$ref/runs.csv"; then
    diff "$ref/runs.csv" "$got/runs.csv" | head -20
    fail "$what: runs.csv differs from the local sweep's"
    ok=0
  fi
  if [ "$(run_dirs "$got")" != "$(run_dirs "$ref")" ] || [ "$(run_dirs "$got" | wc -l)" -ne 16 ]; then
    fail "$what: run directories $(run_dirs "$got" | tr '\n' ' ')"
    ok=0
  fi
  if [ -n "$(find "$got/runs" -maxdepth 1 -name '*.lock')" ]; then
    fail "$what: lock files left: $(find "$got/runs" -maxdepth 1 -name '*.lock' -printf '%f ')"
    ok=0
  fi
  for id in $(run_dirs "$ref"); do
    for f in metrics.csv final.safetensors summary.json; do
      if ! cmp -s "$got/runs/$id/$f" "$ref/runs/$id/$f"; then
        fail "$what: $id/$f differs from the local sweep's"
        ok=0
      fi
    done
  done
  [ "$ok" = 1 ]
}

# ---------------------------------------------------------------- (a) submit and merge
# Runs of about 1 s of one core each (2 s with 4 tasks on 2 cores): long enough to catch in (b).
STEPS_A=${STEPS_A:-1000000}
write_spec "$WORK/a.toml" "$STEPS_A"
mkdir -p "$WORK/jobs/a" "$WORK/jobs/b"
say "(a) local reference: nequil sweep a.toml --jobs 2"
bg_wait "$NEQUIL" sweep "$WORK/a.toml" --out "$WORK/local-a" --jobs 2 --quiet
"$NEQUIL" merge "$WORK/local-a" --quiet
"$NEQUIL" slurm "$WORK/a.toml" --out "$WORK/a" --tasks 4 --time 00:10:00 >"$WORK/jobs/a/sweep.sh"
say "(a) sbatch --wait sweep.sh (16 runs in 4 array tasks)"
start=$SECONDS
if bg_wait sbatch_wait "$WORK/jobs/a" sweep.sh; then
  say "(a) the job array ended after $((SECONDS - start)) s"
  if [ "$(ls "$WORK"/jobs/a/slurm-*.out | wc -l)" -ne 4 ]; then
    fail "(a) expected 4 task logs, got: $(ls "$WORK/jobs/a")"
  elif same_as_local "$WORK/a" "$WORK/local-a" "(a)"; then
    pass "(a) submit and merge: 16 runs in 4 array tasks, runs.csv equals the local sweep's"
  fi
else
  fail "(a) sbatch --wait: the job array failed"
fi

# ---------------------------------------------------------------- (b) preemption
"$NEQUIL" slurm "$WORK/a.toml" --out "$WORK/b" --tasks 4 --time 00:10:00 >"$WORK/jobs/b/sweep.sh"
job=$(submit "$WORK/jobs/b/sweep.sh")
say "(b) submitted job $job"
# A running task with a run in progress (params.json, no status.json) after one it finished (a
# run index >= 4): the run started last among those.
victim=""
caught() {
  local d
  victim=$(for d in $(unfinished "$WORK/b"); do
    ((10#${d#run-} >= 4)) && echo "$(stat -c %.9Y "$WORK/b/runs/$d/params.json") $d"
  done | sort -n | tail -n 1 | cut -d' ' -f2)
  [ -n "$victim" ] && task_running "$job" $((10#${victim#run-} % 4))
}
wait_for "(b) a task running its second run or later" 60 caught
index=$((10#${victim#run-}))
task=$((index % 4))
done_before=$(status_sums "$WORK/b")
scancel "${job}_${task}"
say "(b) scancel ${job}_${task} while $victim (index $index) was running"
wait_for "(b) task ${job}_${task} to end" 30 job_gone "${job}_${task}"
if [ -f "$WORK/b/runs/$victim/status.json" ]; then
  fail "(b) $victim finished before the cancel reached it"
elif [ -n "$(pgrep -f "$WORK/b.*--shard ${task}/4" || true)" ]; then
  fail "(b) the sweep of the cancelled task is still running"
else
  pass "(b) task ${task} cancelled mid-run: $victim left unfinished"
fi
wait_for "(b) the other tasks of job $job to end" 120 job_gone "$job"
log=$(ls "$WORK/jobs/b/"slurm-*_"${task}".out)
grep -q CANCELLED "$log" || fail "(b) no CANCELLED line in $log"
merged=$("$NEQUIL" merge "$WORK/b" --allow-incomplete 2>&1)
say "(b) before resubmitting: $merged"
echo "$merged" | grep -q ' unfinished' || fail "(b) merge --allow-incomplete shows nothing unfinished"
say "(b) sbatch --wait the same script"
if bg_wait sbatch_wait "$WORK/jobs/b" sweep.sh; then
  if same_as_local "$WORK/b" "$WORK/local-a" "(b)"; then
    if ! untouched "$done_before" "$WORK/b"; then
      fail "(b) a run finished before the cancel was run again"
    else
      pass "(b) preemption: resubmitted, every run once and bit-identical to the local sweep; runs finished before the cancel untouched: $(grep -c . <<<"$done_before")"
    fi
  fi
else
  fail "(b) the resubmitted job array failed"
fi

# ---------------------------------------------------------------- (b2) two copies at once
# The same array submitted twice at once into one directory: each task runs twice, at the same
# time, and the run locks make the two copies share the runs instead of restarting each other's.
mkdir -p "$WORK/jobs/b2"
"$NEQUIL" slurm "$WORK/a.toml" --out "$WORK/b2" --tasks 4 --time 00:10:00 >"$WORK/jobs/b2/sweep.sh"
say "(b2) sbatch --wait the same script twice at once"
sbatch_wait "$WORK/jobs/b2" sweep.sh &
first=$!
BG+=("$first")
if bg_wait sbatch_wait "$WORK/jobs/b2" sweep.sh && wait "$first"; then
  # Every task prints "(F finished before, N now[, H held by another process])": the N add up to
  # the runs executed.
  ran=$(cat "$WORK"/jobs/b2/slurm-*.out | sed -n 's/.* finished before, \([0-9]*\) now.*/\1/p' | awk '{s += $1} END {print s + 0}')
  held=$(cat "$WORK"/jobs/b2/slurm-*.out | sed -n 's/.* now, \([0-9]*\) held by another process.*/\1/p' | awk '{s += $1} END {print s + 0}')
  if [ "$(ls "$WORK"/jobs/b2/slurm-*.out | wc -l)" -ne 8 ]; then
    fail "(b2) expected 8 task logs, got: $(ls "$WORK/jobs/b2")"
  elif [ "$ran" != 16 ]; then
    grep -h . "$WORK"/jobs/b2/slurm-*.out
    fail "(b2) the 8 tasks executed $ran runs, not 16"
  elif [ "$held" -lt 1 ]; then
    grep -h . "$WORK"/jobs/b2/slurm-*.out
    fail "(b2) no task met a run held by the other copy: the copies did not run at once"
  elif same_as_local "$WORK/b2" "$WORK/local-a" "(b2)"; then
    pass "(b2) two copies of each task at once: 16 runs executed once ($held skipped as held by the other copy), bit-identical to the local sweep"
  fi
else
  wait "$first"
  fail "(b2) a job array failed"
fi

# ---------------------------------------------------------------- (c) time limit
# Slurm enforces a one-minute limit 60-90 s after the start (it checks limits every 30 s). The
# reference, a local sweep in 4 shard processes, runs alongside the 4 tasks: 8 processes, each in
# its own session like the tasks (the kernel may share the cores out per session), share the
# cores. The runs are sized so that each task's 4 runs would take C_TASK_SECONDS of wall time,
# beyond the limit, from the speed of 8 such processes measured now (on a machine shared with
# other work, the share of the cores matters, not their speed). Should every task still finish
# within its limit (the machine got less busy), nothing was shown: again with runs twice as long.
C_TASK_SECONDS=${C_TASK_SECONDS:-120}
# sweep_sessions SPEC OUT SHARDS: a local sweep as SHARDS single-threaded processes, each in its own
# session; waits for them and fails if one fails.
sweep_sessions() {
  local pids=() i rc=0
  for ((i = 0; i < $3; i++)); do
    setsid -w "$NEQUIL" sweep "$1" --out "$2" --shard "$i/$3" --jobs 1 --quiet &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  return "$rc"
}
write_spec "$WORK/probe.toml" 400000 "[0, 1]"
bg_wait sweep_sessions "$WORK/probe.toml" "$WORK/probe" 8
rate=$(cat "$WORK"/probe/runs/run-*/status.json | awk -F': ' '/"seconds"/ {print $2}' | sort -g | sed -n 4p)
steps=$(awk -v r="$rate" -v t="$C_TASK_SECONDS" 'BEGIN {printf "%d", 400000 * (t / 4) / r / 1000 * 1000}')
say "(c) 8 runs of 400000 steps at once, one per process, took $rate s each"
for attempt in 1 2 3; do
  C=$WORK/c$attempt CJ=$WORK/jobs/c$attempt CREF=$WORK/local-c$attempt
  mkdir -p "$CJ"
  write_spec "$C.toml" "$steps"
  "$NEQUIL" slurm "$C.toml" --out "$C" --tasks 4 --time 00:01:00 >"$CJ/short.sh"
  "$NEQUIL" slurm "$C.toml" --out "$C" --tasks 4 --time 00:10:00 >"$CJ/sweep.sh"
  job=$(submit "$CJ/short.sh")
  say "(c) submitted job $job with --time 00:01:00: runs of $steps steps"
  sweep_sessions "$C.toml" "$CREF" 4 &
  ref_pid=$!
  BG+=("$ref_pid")
  csub=$SECONDS
  wait_for "(c) Slurm to end job $job at its time limit" 150 job_gone "$job"
  timed_out=$(cat "$CJ"/slurm-*.out | grep -c "DUE TO TIME LIMIT" || true)
  left=$(unfinished "$C" | wc -l)
  merged=$("$NEQUIL" merge "$C" --allow-incomplete 2>&1)
  say "(c) job $job ended $((SECONDS - csub)) s after its submission; $merged"
  if [ "$timed_out" -ge 1 ] && [ "$left" -ge 1 ]; then
    break
  fi
  if [ "$timed_out" -ge 1 ] || [ "$attempt" = 3 ]; then
    # Killed between two runs (or never killed, three times): nothing to resume mid-run.
    fail "(c) $timed_out tasks killed at their time limit, $left runs left unfinished"
    break
  fi
  say "(c) every task finished within its limit; again with runs twice as long"
  for pid in $(pgrep -f "$CREF"); do kill "$pid"; done # the reference's processes, by pid
  wait "$ref_pid" 2>/dev/null || true
  steps=$((steps * 2))
done
if [ "$timed_out" -ge 1 ] && [ "$left" -ge 1 ]; then
  pass "(c) $timed_out of 4 tasks killed by Slurm at their time limit, $left runs left unfinished"
  grep -h "DUE TO TIME LIMIT" "$CJ"/slurm-*.out | head -n 1
fi
done_before=$(status_sums "$C")
say "(c) sbatch --wait the sweep with --time 00:10:00"
if ! bg_wait sbatch_wait "$CJ" sweep.sh; then
  fail "(c) the resubmitted job array failed"
fi
wait "$ref_pid" || fail "(c) the local reference sweep failed"
"$NEQUIL" merge "$CREF" --quiet
if same_as_local "$C" "$CREF" "(c)"; then
  if ! untouched "$done_before" "$C"; then
    fail "(c) a run finished before the time limit was run again"
  else
    pass "(c) time limit: resubmitted, every run once and bit-identical to the local sweep; runs finished before the time limit untouched: $(grep -c . <<<"$done_before")"
  fi
fi

# ---------------------------------------------------------------- (d) clean end
if [ -n "$(squeue -h)" ]; then
  squeue
  fail "(d) jobs left in squeue"
elif pids=$(test_pids) && [ -n "$pids" ]; then
  ps -o pid,args -p "$(echo "$pids" | paste -sd,)"
  fail "(d) processes of the test left running"
else
  pass "(d) clean end: squeue empty, no process of the test running"
fi

if [ "$FAILED" -ne 0 ]; then
  exit 1
fi
