"""eosflow from Python: gradient descent with weight decay on scale-invariant
models (Lyu, Li & Arora, NeurIPS 2022) — eosflow's runs into numpy, and its
Lanczos, spherical sharpness and Edge-of-Stability monitor on your own model.

Runs (the Rust runner; the run directory is the one ``eosflow run`` writes)::

    import eosflow
    run = eosflow.reproduce("fig1")            # the paper's Fig. 1 in seconds
    run.metrics["loss"], run.sharpness["sharpness"], run.summary["final_sharpness"]

Operators from Python (numpy float64 in and out)::

    res = eosflow.lanczos(lambda x: A @ x, dim=A.shape[0], k=3)
    s = eosflow.spherical_sharpness(hvp, w)    # Def. 1.1; hvp(w, v) = ∇²L(w)·v
    eosflow.trace(A), eosflow.spectral_density(A)  # Hutch++, SLQ
    f = eosflow.sharpness_flow(loss_and_grad, hvp, zeta0, tau_max=2.0)   # eq. 3

Your own loop::

    with eosflow.EoSMonitor(lr, wd, hvp, dim=w.size, out="runs/mine") as mon:
        for t in range(T):
            loss, g = loss_and_grad(w)
            mon.observe(w, loss, g)
            w = (1 - lr * wd) * w - lr * g

Threads: at import the package builds eosflow's thread pool (ghost batches,
sweeps) with ``RAYON_NUM_THREADS`` threads (default: all cores) and, unless
set, sets ``CANDLE_NUM_THREADS=1`` and then ``RAYON_NUM_THREADS=1`` for the
per-op parallelism of the network backend, as the ``eosflow`` program does;
results do not depend on either.
"""

from __future__ import annotations

import os as _os


def _threads() -> int:
    try:
        n = int(_os.environ.get("RAYON_NUM_THREADS", ""))
    except ValueError:
        n = 0
    return n if n > 0 else (_os.cpu_count() or 1)


_POOL = _threads()

from . import _native  # noqa: E402

_native.configure_threads(_POOL)
_per_op = _os.environ.get("EOSFLOW_CANDLE_THREADS", "1")
_os.environ.setdefault("CANDLE_NUM_THREADS", _per_op)
_os.environ["RAYON_NUM_THREADS"] = _per_op

from ._native import EosflowError  # noqa: E402
from ._ops import (  # noqa: E402
    FlowResult,
    LanczosResult,
    SharpnessResult,
    SpectralDensityResult,
    TraceResult,
    effective_lr,
    intrinsic_lr,
    lanczos,
    regime,
    sharpness_flow,
    spectral_density,
    spherical_sharpness,
    trace,
)
from ._run import Run, config, load_run, presets, reproduce, resume, run  # noqa: E402
from ._monitor import EoSMonitor  # noqa: E402
from . import datasets  # noqa: E402

__version__: str = _native.__version__

__all__ = [
    "EoSMonitor",
    "FlowResult",
    "SpectralDensityResult",
    "TraceResult",
    "EosflowError",
    "LanczosResult",
    "Run",
    "SharpnessResult",
    "config",
    "datasets",
    "effective_lr",
    "intrinsic_lr",
    "lanczos",
    "load_run",
    "presets",
    "regime",
    "reproduce",
    "resume",
    "run",
    "sharpness_flow",
    "spectral_density",
    "spherical_sharpness",
    "trace",
]
