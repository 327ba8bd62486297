"""The EoS monitor for your own full-batch GD+WD loop."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from . import _native
from ._ops import Block, block_indices
from ._run import PathLike, Run


def _flat(x: Any, what: str) -> np.ndarray:
    """A flat float64 vector from an array or a list of arrays (the
    parameters of a model, in order)."""
    if isinstance(x, (list, tuple)):
        parts = [np.asarray(a) for a in x]
        for a in parts:
            if a.dtype != np.float64:
                raise ValueError(f"{what} has a part of dtype {a.dtype}; eosflow computes in float64")
        return np.concatenate([a.reshape(-1) for a in parts]) if parts else np.zeros(0)
    a = np.asarray(x)
    if a.dtype != np.float64:
        raise ValueError(f"{what} has dtype {a.dtype}; eosflow computes in float64 "
                         "(JAX: jax.config.update('jax_enable_x64', True); PyTorch: torch.float64)")
    return np.ascontiguousarray(a).reshape(-1)


class EoSMonitor:
    """Measures what eosflow's runner measures, in a training loop of yours:
    per step ‖w_t‖, ‖∇L(θ_t)‖, the effective LR η̃_t = η̂/((1 − η̂λ̂)‖w_S‖²)
    (Lemma 3.1) and the threshold 2/η̃_t; every ``every`` steps the spherical
    sharpness (Def. 1.1; Lanczos warm-started from the previous top
    eigenvector) and the regime (``"stable"``, ``"eos_above"``,
    ``"eos_below"``, ``"unstable"``); the EoS entry as the runner defines it.
    It writes a run directory with eosflow's schema (config.toml with
    ``[problem] kind = "external"``, metrics.csv, sharpness.csv,
    w_final.npy, summary.json, figures/overview.png) that ``eosflow plot``
    and :func:`eosflow.load_run` read.

    ``hvp(w, v)`` returns ∇²L(w)·v for flat float64 vectors (see
    :func:`eosflow.jax.hvp`); ``dim`` is the number of parameters; ``block``
    declares the scale-invariant coordinates (None: all of w;
    ``scale_invariant=False``: none, the plain LR and ordinary sharpness).
    The monitor never changes w: the loop does GD+WD with the same
    ``lr`` and ``wd``.

    Use it as a context manager, or call :meth:`close` at the end; an
    exception inside the ``with`` block ends the directory with status
    ``"interrupted"`` (or ``"diverged"`` after a non-finite step).
    """

    def __init__(
        self,
        lr: float,
        wd: float,
        hvp: Callable[[np.ndarray, np.ndarray], Any],
        dim: int,
        out: PathLike,
        *,
        block: Block = None,
        scale_invariant: bool = True,
        every: int = 10,
        k: int = 1,
        tol: float = 1e-10,
        band: float = 0.1,
        log_every: int = 1,
        steps: int | None = None,
        name: str = "external",
        source: str = "",
        seed: int = 0,
        max_basis: int = 40,
        max_restarts: int = 200,
        figures: bool = True,
        force: bool = False,
    ):
        idx = block_indices(block, int(dim)) if scale_invariant else None
        self._native = _native.NativeMonitor(
            hvp, int(dim), float(lr), float(wd), os.fspath(out), bool(force), idx, bool(scale_invariant),
            int(every), int(k), float(tol), int(max_basis), int(max_restarts), int(seed), float(band),
            int(log_every), int(steps or 1), str(name), str(source), bool(figures),
        )
        self.dir = os.fspath(out)
        self._step = 0
        self._run: Run | None = None

    def observe(self, w: Any, loss: float, grad: Any, step: int | None = None) -> dict:
        """Step t of the loop, before its update: w_t, L(w_t) and ∇L(w_t)
        (flat arrays or lists of arrays in the same order). ``step`` defaults
        to one more than the last. Returns the step's record: ``step``,
        ``loss``, ``grad_norm``, ``w_norm``, ``eff_lr``, ``two_over_eff_lr``,
        ``sharpness`` (None unless evaluated), ``regime``, ``eos_entry``.
        A non-finite loss, gradient or w raises FloatingPointError and the
        directory ends with status ``"diverged"``."""
        t = self._step if step is None else int(step)
        rec = self._native.observe(t, _flat(w, "w"), float(loss), _flat(grad, "grad"))
        self._step = t + 1
        return rec

    def close(self, interrupted: bool = False) -> Run:
        """Writes the last row, w_final.npy, the figure and summary.json;
        returns the :class:`Run`. Idempotent."""
        if self._run is None:
            self._run = Run(self._native.close(bool(interrupted)))
        return self._run

    def __enter__(self) -> "EoSMonitor":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(interrupted=exc_type is not None and not issubclass(exc_type, FloatingPointError))
