#!/usr/bin/env bash
# One network run over MPI ranks (README: "On a cluster: sweeps, Slurm, MPI"):
# OpenMPI from Debian on loopback, the `mpi` feature's clippy, build and tests
# (1, 2, 3 ranks byte-identical to one process; SIGTERM and SIGKILL mid-run,
# then resume), and the README's mpirun command for fig2 on a CIFAR-format
# sample against one process. Leaves target/release/eosflow built with MPI
# (it runs as a plain process without an MPI launcher) for .ci/slurm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq libopenmpi-dev openmpi-bin libclang-dev >/dev/null
mpirun --version | head -1
# As root in a container, over shared memory and loopback only.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_oob_tcp_if_include=lo

cargo clippy -p eosflow-cli --features mpi --all-targets --release -- -D warnings
cargo build --release -q -p eosflow-cli --features mpi
cargo test --release -p eosflow-cli --features mpi --test mpi 2>&1 | tee /tmp/eosflow-mpi-test.log
grep -E "^test result:" /tmp/eosflow-mpi-test.log

E=$PWD/target/release/eosflow
W=$(mktemp -d)
scripts/cifar-sample.py "$W/cifar"
tiny=(--steps 2 --set problem.ghost_batch=10 --set problem.hessian_examples=20 --set problem.width=0.125
      --set sharpness.every=2 --set 'output.formats=["png"]')
"$E" reproduce fig2 --data "$W/cifar" "${tiny[@]}" --out "$W/one" >/dev/null
timeout 600 mpirun -np 2 --oversubscribe "$E" reproduce fig2 --data "$W/cifar" "${tiny[@]}" --out "$W/np2" 2>&1 |
    tee "$W/np2.log"
grep -q "all 2 ranks agree bit for bit" "$W/np2.log"
for f in metrics.csv sharpness.csv w_final.npy; do cmp "$W/one/$f" "$W/np2/$f"; done
grep -q '"ranks": 2' "$W/np2/summary.json"
echo "== mpi: fig2 on 2 ranks byte-identical to one process; all checks passed"
