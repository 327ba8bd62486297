#!/usr/bin/env bash
# `eosflow sweep --slurm` against a real single-node Slurm on loopback
# (scripts/slurm-local.sh): a 4-run sweep (fig6's runs) through
# --slurm --submit --wait, byte-identical to the same sweep run --local; one
# task SIGKILLed and one cancelled mid-run, and the sweep submitted again
# resumes both from their checkpoints, to the same bytes; the README's fig14 cluster command on a
# CIFAR-format sample. Every wait is bounded; the daemons are stopped at the
# end, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

E=${EOSFLOW_BIN:-$PWD/target/release/eosflow}
test -x "$E" || cargo build --release -q -p eosflow-cli
scripts/slurm-local.sh install
eval "$(scripts/slurm-local.sh start)"
trap 'scripts/slurm-local.sh stop' EXIT
sinfo

W=$(mktemp -d)
common=(--set run.checkpoint_every=5000 --set run.checkpoint_min_interval_s=0 --set 'output.formats=["png"]')
slurm=(--slurm --cpus-per-task 1 --time 0:20:00 --poll 1 --wait-timeout 900)

same() { # same DIR_A DIR_B: every run's metrics, sharpness and final weights byte for byte
    local n=0
    for run in "$1"/*/; do
        run=$(basename "$run")
        [ -f "$1/$run/metrics.csv" ] || continue
        for f in metrics.csv sharpness.csv w_final.npy; do
            cmp "$1/$run/$f" "$2/$run/$f"
        done
        n=$((n + 1))
    done
    echo "  $n runs byte-identical: $1 and $2"
    [ "$n" -gt 0 ]
}

echo "== slurm: fig6's 4 runs locally, then as a job array (--submit --wait)"
"$E" sweep fig6 "${common[@]}" --out "$W/local"
"$E" sweep fig6 "${common[@]}" --out "$W/array" "${slurm[@]}" --submit --wait
same "$W/local" "$W/array"
test -s "$W/array/figures/fig6.png"
grep -q "eosflow sweep fig6: task 3 of 4" "$W/array/slurm/logs/task-3.log"

echo "== slurm: task 2 SIGKILLed (a node crash) and task 3 cancelled (SIGTERM, as at preemption or the time"
echo "   limit) after their first checkpoints; the sweep submitted again resumes both"
out=$("$E" sweep fig6 "${common[@]}" --out "$W/kill" "${slurm[@]}" --submit)
echo "$out"
job=$(sed -n 's/.*submitted job \([0-9]*\).*/\1/p' <<<"$out")
wait_for() { for _ in $(seq 1 600); do [ -f "$1" ] && return 0; sleep 0.1; done; echo "no $1" >&2; return 1; }
wait_for "$W/kill/N1200/checkpoint/state.json"
pkill -KILL -f -- "--out $W/kill --task 2"
wait_for "$W/kill/N1600/checkpoint/state.json"
scancel "${job}_3"
for _ in $(seq 1 300); do [ -z "$(squeue -h -j "$job")" ] && break; sleep 0.2; done
test -z "$(squeue -h -j "$job")"
test ! -f "$W/kill/N1200/summary.json" # killed: no summary
grep -q '"status": "interrupted"' "$W/kill/N1600/summary.json"
"$E" sweep --collect "$W/kill" | tee "$W/collect.txt"
grep -q "2 of 4 runs not finished: N1200, N1600" "$W/collect.txt"
"$E" sweep fig6 "${common[@]}" --out "$W/kill" "${slurm[@]}" --submit --wait
grep -q "^#SBATCH --array=2-3$" "$W/kill/slurm/array.sbatch"
grep -q "N1200: resumed at step" "$W/kill/slurm/logs/task-2.log"
grep -q "N1600: ran; interrupted after step" "$W/kill/slurm/logs/task-3.log"
grep -q "N1600: resumed at step" "$W/kill/slurm/logs/task-3.log"
same "$W/local" "$W/kill"

echo "== slurm: the README's fig14 command on a CIFAR-format sample (2 steps, tiny settings)"
scripts/cifar-sample.py "$W/cifar"
tiny=(--steps 2 --set problem.train_per_class=2 --set problem.ghost_batch=20 --set problem.width=0.125
      --set sharpness.every=2 --set 'output.formats=["png"]')
"$E" sweep fig14 --data "$W/cifar" "${tiny[@]}" --out "$W/fig14" "${slurm[@]}" --mem 2G --submit --wait
test -s "$W/fig14/figures/fig14.png"
test "$(grep -c ',completed,' "$W/fig14/runs.csv")" = 4
echo "== slurm: the README's srun command for fig2 (2 ranks, --mpi=pmix) against one process"
if ! ldd "$E" | grep -q libmpi; then
    echo "  $E was built without --features mpi (.ci/mpi.sh builds it): skipped"
elif srun --mpi=list 2>&1 | grep -q pmix; then
    fig2=(--steps 2 --set problem.ghost_batch=10 --set problem.hessian_examples=20 --set problem.width=0.125
          --set sharpness.every=2 --set 'output.formats=["png"]')
    "$E" reproduce fig2 --data "$W/cifar" "${fig2[@]}" --out "$W/fig2-one" >/dev/null
    timeout 600 srun --mpi=pmix -n 2 "$E" reproduce fig2 --data "$W/cifar" "${fig2[@]}" --out "$W/fig2-srun"
    for f in metrics.csv sharpness.csv w_final.npy; do cmp "$W/fig2-one/$f" "$W/fig2-srun/$f"; done
    grep -q '"ranks": 2' "$W/fig2-srun/summary.json"
    echo "  fig2 over 2 srun ranks: byte-identical to one process"
else
    echo "  this Slurm has no pmix plugin: skipped"
fi
echo "== slurm: all checks passed"
