#!/usr/bin/env bash
# Peak memory of one full-width SI VGG-11 sharpness evaluation (fig2's
# network, 9.22M parameters) on 10 CIFAR-format images whose Lanczos basis
# fills (basis 40) and restarts once: the run with sharpness.every=1 against
# the same run without sharpness. Prints the peak RSS of both, as
# /usr/bin/time -v reports it. Usage: bench/lanczos_memory.sh [EOSFLOW_BINARY]
# (default target/release/eosflow). Set MIMALLOC_PURGE_DELAY=0 to see the
# live peak instead of the allocator's retained one.
set -euo pipefail
BIN=${1:-target/release/eosflow}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Ten records per file of random pixels, labels 0..9: the format, not the data, matters here.
python3 - "$work/cifar" <<'PY'
import os, random, sys
d = sys.argv[1]; os.makedirs(d)
rng = random.Random(12345)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    with open(os.path.join(d, name), "wb") as f:
        for i in range(10):
            f.write(bytes([i % 10]) + bytes(rng.randrange(256) for _ in range(3072)))
PY
for every in 0 1; do
  /usr/bin/time -v "$BIN" reproduce fig2 --steps 1 --out "$work/run-$every" --data "$work/cifar" \
    --set problem.train_per_class=1 --set problem.ghost_batch=10 --set problem.hessian_examples=0 \
    --set sharpness.every=$every --set sharpness.tol=1e-14 --set sharpness.max_restarts=1 \
    --set output.figures=false > "$work/log-$every" 2>&1
  echo "sharpness.every=$every: $(grep 'Maximum resident' "$work/log-$every" | awk '{print $NF/1e6 " GB peak RSS"}'), $(grep -o '[0-9]* HVPs in [0-9]* sharpness evaluations' "$work/log-$every")"
done
