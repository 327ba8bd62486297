"""Strong scaling of one network run over MPI ranks (`--features mpi`): one
GD+WD step and one HVP of the digits CNN and of SI VGG-11 at width 1/4 on a
CIFAR-shaped sample (random pixels in CIFAR-10's binary format), with 1 and
2 ranks of one thread each, `eosflow bench` under mpirun. Prints medians,
the exchange's time on rank 0 (waiting for the previous rank included) and
the bytes each rank sends, then a bandwidth model of the same exchange on 8
GPUs.

    python bench/mpi_scaling.py [--bin target/release/eosflow] [--ranks 1,2]

The exchange adds the ghost batches' vectors in batch order along the ranks
(eosflow_nn::problem::BatchExchange): rank r receives D+1 values from rank
r-1, adds its batches, sends D+1 values on, and the last rank broadcasts the
total, so a step moves (R-1)(D+1) values along the chain and (R-1)(D+1) in
the broadcast: 16(R-1)(D+1) bytes, of which the chain's R-1 hops are serial.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
from pathlib import Path

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_btl": "self,vader",
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    "RAYON_NUM_THREADS": "1",
}


def cifar_sample(d: Path, per_file: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    r = random.Random(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        with open(d / name, "wb") as f:
            for i in range(per_file):
                f.write(bytes([i % 10]) + r.randbytes(3072))


def bench(binary: str, ranks: int, target: str, args: list[str]) -> dict:
    """`eosflow bench` under `mpirun -np ranks` (ranks = 0: a plain process,
    no mpirun; mpirun binds each rank to a core, which alone changes the
    time here, so the scaling is against `mpirun -np 1`)."""
    cmd = [binary, "bench", target, *args]
    if ranks > 0:
        cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", *cmd]
    env = {**os.environ, **MPI_ENV}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/eosflow")
    ap.add_argument("--ranks", default="0,1,2", help="0 = one process without mpirun")
    a = ap.parse_args()
    ranks = [int(r) for r in a.ranks.split(",")]
    tmp = Path(tempfile.mkdtemp())
    cifar_sample(tmp / "cifar", 60)
    workloads = [
        # 200 digits in 4 ghost batches of 50.
        ("digits-cnn, 4 ghost batches of 50", "digits-cnn",
         ["--warmup", "5", "--timed", "30", "--evals", "0", "--hvps", "30",
          "--set", "problem.ghost_batch=50"]),
        # 260 CIFAR-shaped images (26 per class) in 4 ghost batches of 65.
        ("SI VGG-11 width 1/4, 4 ghost batches of 65", "fig14",
         ["--warmup", "1", "--timed", "3", "--evals", "0", "--hvps", "3", "--data", str(tmp / "cifar"),
          "--set", "problem.train_per_class=26", "--set", "problem.ghost_batch=65",
          "--set", "problem.width=0.25"]),
    ]
    print("speedup = step/HVP time of mpirun -np 1 over this row's")
    print(f"{'workload':<44} {'ranks':>5} {'D':>9} {'step ms':>9} {'HVP ms':>9} {'speedup':>13} "
          f"{'exch. ms/step':>13} {'exch. ms/HVP':>12} {'MB sent/step':>12}")
    dims = {}
    for label, target, args in workloads:
        base = None
        for r in ranks:
            j = bench(a.bin, r, target, args)
            step, hvp = j["step_us"]["median"] / 1e3, j["hvp_us"]["median"] / 1e3
            mpi = j.get("mpi", {"per_step": {"exchange_us": 0, "bytes_sent": 0}, "per_hvp": {"exchange_us": 0}})
            if r == 1:
                base = (step, hvp)
            dims[label] = j["dim"]
            speedup = f"{base[0] / step:>6.2f}/{base[1] / hvp:<6.2f}" if base else f"{'-':>13}"
            print(f"{label:<44} {r or 'plain':>5} {j['dim']:>9} {step:>9.2f} {hvp:>9.2f} {speedup} "
                  f"{mpi['per_step']['exchange_us'] / 1e3:>13.3f} {mpi['per_hvp']['exchange_us'] / 1e3:>12.3f} "
                  f"{mpi['per_step']['bytes_sent'] / 1e6:>12.3f}")
    print("\nModel on 8 GPUs (R = 8) over a 25 GB/s link per GPU (NVLink-class; ~12 GB/s for PCIe 4 x16),")
    print("5 µs latency per message: the chain's 7 serial hops of D+1 doubles, then a broadcast tree (3 rounds):")
    for label, d in dims.items():
        msg = 8 * (d + 1)
        t = 7 * (5e-6 + msg / 25e9) + 3 * (5e-6 + msg / 25e9)
        print(f"  {label}: D = {d}: {msg / 1e6:.2f} MB a message, ~{t * 1e3:.2f} ms of exchange per gradient or HVP")
    full = 9_221_642
    msg = 8 * (full + 1)
    t = 10 * (5e-6 + msg / 25e9)
    print(f"  SI VGG-11 at full width (fig2, fig14): D = {full}: {msg / 1e6:.1f} MB a message, ~{t * 1e3:.1f} ms per "
          f"gradient or HVP, against seconds of GPU compute per ghost batch of 1000")


if __name__ == "__main__":
    main()
