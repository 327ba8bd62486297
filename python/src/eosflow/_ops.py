"""Operators from Python: eosflow's Lanczos and spherical sharpness on any
callable (numpy float64 in and out), and the scalar rules of the paper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import numpy as np

from . import _native

Block = Union[None, slice, Sequence[int], np.ndarray]


@dataclass(frozen=True)
class LanczosResult:
    """What :func:`lanczos` found.

    ``eigenvalues`` are ordered from the end asked for: descending for
    ``which="LA"``, ascending for ``"SA"``; ``eigenvectors[:, i]`` is the unit
    Ritz vector of ``eigenvalues[i]`` (columns, as ``numpy.linalg.eigh`` and
    ``scipy.sparse.linalg.eigsh``); ``residuals[i] = ‖A·y_i − θ_i·y_i‖₂``,
    computed outright; ``matvecs`` counts the calls of the operator.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    converged: bool
    matvecs: int
    restarts: int


@dataclass(frozen=True)
class SharpnessResult:
    """What :func:`spherical_sharpness` found: ``sharpness`` = λ1(∇²L(θ)) at
    θ = w_S/‖w_S‖ (Def. 1.1), ``top_k`` the k largest of those eigenvalues,
    ``residual`` the largest Lanczos residual in the same units, ``hvps`` the
    calls of ``hvp``, ``eigenvector`` the unit top eigenvector on the block
    (pass it as ``v0`` to warm-start the next evaluation)."""

    sharpness: float
    top_k: np.ndarray
    residual: float
    hvps: int
    converged: bool
    eigenvector: np.ndarray


def _operator(a: Any, dim: int | None) -> tuple[Callable[[np.ndarray], Any], int]:
    """A matvec and its dimension from a callable, a matrix or a
    ``scipy.sparse.linalg.LinearOperator`` (anything with ``matvec`` and
    ``shape``)."""
    if hasattr(a, "matvec") and hasattr(a, "shape"):
        n, m = a.shape
        if n != m:
            raise ValueError(f"the operator has shape {a.shape}; Lanczos needs a square (symmetric) one")
        if dim is not None and dim != n:
            raise ValueError(f"dim = {dim} but the operator has shape {a.shape}")
        return (lambda x: np.asarray(a.matvec(x)).reshape(-1)), n
    if isinstance(a, np.ndarray):
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"the matrix has shape {a.shape}; Lanczos needs a square (symmetric) one")
        if a.dtype != np.float64:
            raise ValueError(f"the matrix has dtype {a.dtype}; use float64")
        return (lambda x: a @ x), a.shape[0]
    if not callable(a):
        raise TypeError("matvec must be a callable x -> A·x, a square float64 matrix or a LinearOperator")
    if dim is None:
        raise ValueError("dim is required with a callable matvec (the length of x)")
    return a, int(dim)


def _start(v0: Any, n: int, what: str) -> np.ndarray | None:
    if v0 is None:
        return None
    v = np.ascontiguousarray(v0, dtype=np.float64).reshape(-1)
    if v.shape != (n,):
        raise ValueError(f"{what} has shape {np.shape(v0)}; expected ({n},)")
    return v


def lanczos(
    matvec: Any,
    dim: int | None = None,
    k: int = 1,
    which: str = "LA",
    tol: float = 1e-10,
    v0: Any = None,
    seed: int = 0,
    max_basis: int = 40,
    max_restarts: int = 200,
) -> LanczosResult:
    """The k largest (``which="LA"``) or smallest (``"SA"``) algebraic
    eigenpairs of a symmetric operator, by eosflow's Lanczos: full
    reorthogonalisation (CGS2) and thick restarts, the Ritz pairs confirmed
    by one more application each.

    ``matvec`` is a callable ``x -> A·x`` (float64 array of shape (dim,) in
    and out; a JAX or torch result that numpy can read is accepted if it is
    float64), a square float64 ndarray, or a ``scipy.sparse.linalg.LinearOperator``
    (a curvlinops Hessian, say). Converged when every pair has
    ``‖A·y − θ·y‖ ≤ tol·max|θ|``. Unlike ``eigsh(which="LM")`` this returns the
    largest *algebraic* eigenvalues, the sharpness of an indefinite Hessian.
    ``v0`` warm-starts; without it the start is random from ``seed``, so the
    result is reproducible bit for bit.

    An exception raised by ``matvec`` propagates with its traceback; an
    output of the wrong shape or dtype is a ``ValueError``.

    >>> import numpy as np, eosflow
    >>> A = np.diag([3.0, 1.0, -5.0])
    >>> r = eosflow.lanczos(A, k=1)
    >>> round(float(r.eigenvalues[0]), 12), r.converged
    (3.0, True)
    """
    if which not in ("LA", "SA"):
        raise ValueError(f'which = {which!r}: use "LA" (largest algebraic) or "SA" (smallest algebraic)')
    f, n = _operator(matvec, dim)
    d = _native.lanczos(f, n, int(k), which == "LA", float(tol), int(max_basis), int(max_restarts),
                        _start(v0, n, "v0"), int(seed))
    return LanczosResult(
        eigenvalues=d["eigenvalues"],
        eigenvectors=np.ascontiguousarray(d["eigenvectors"].T) if d["eigenvectors"].size else d["eigenvectors"],
        residuals=d["residuals"],
        converged=bool(d["converged"]),
        matvecs=int(d["matvecs"]),
        restarts=int(d["restarts"]),
    )


def block_indices(block: Block, dim: int) -> list[int] | None:
    """The sorted coordinates of a scale-invariant block: ``None`` (all of
    w), a slice, a boolean mask of length dim, or integer indices."""
    if block is None:
        return None
    if isinstance(block, slice):
        idx = np.arange(dim)[block]
    else:
        b = np.asarray(block)
        if b.dtype == bool:
            if b.shape != (dim,):
                raise ValueError(f"a boolean block mask has shape {b.shape}; expected ({dim},)")
            idx = np.flatnonzero(b)
        elif np.issubdtype(b.dtype, np.integer):
            idx = np.unique(b.reshape(-1))
        else:
            raise ValueError(f"block has dtype {b.dtype}: give indices (int), a boolean mask or a slice")
    if idx.size == 0:
        raise ValueError("the scale-invariant block is empty")
    if idx[0] < 0 or idx[-1] >= dim:
        raise ValueError(f"block indices must lie in 0..{dim - 1}")
    return [int(i) for i in idx]


def _point(w: Any) -> np.ndarray:
    a = np.asarray(w)
    if a.dtype != np.float64:
        raise ValueError(f"w has dtype {a.dtype}; eosflow computes in float64 (cast it, or enable jax_enable_x64)")
    return np.ascontiguousarray(a).reshape(-1)


def spherical_sharpness(
    hvp: Callable[[np.ndarray, np.ndarray], Any],
    w: Any,
    block: Block = None,
    scale_invariant: bool = True,
    k: int = 1,
    tol: float = 1e-10,
    v0: Any = None,
    seed: int = 0,
    max_basis: int = 40,
    max_restarts: int = 200,
) -> SharpnessResult:
    """Spherical sharpness at w (Def. 1.1, computed as in App. Q.3):

    λ1(∇²L(w_S/‖w_S‖)) = ‖w_S‖²·λ1(∇²_S L(w)),

    which holds because the Hessian of a scale-invariant loss is
    (−2)-homogeneous (Lemma D.1). ``hvp(w, v)`` returns ∇²L(w)·v (float64,
    shape of w); ``block`` declares the scale-invariant coordinates S (None:
    all of w; a slice, mask or indices: the principal sub-block, App. P.2's
    partial sharpness); ``scale_invariant=False`` gives the ordinary
    λ1(∇²L(w)). ``v0`` is a warm start on the block (the previous
    ``eigenvector``).

    >>> import numpy as np, eosflow
    >>> H = np.diag([4.0, 1.0, 9.0])
    >>> s = eosflow.spherical_sharpness(lambda w, v: H @ v, np.array([0.0, 2.0, 5.0]), block=[0, 1])
    >>> round(s.sharpness, 10)   # ‖w_S‖² · 4
    16.0
    """
    x = _point(w)
    idx = block_indices(block, x.size) if scale_invariant else None
    n = len(idx) if idx is not None else x.size
    d = _native.spherical_sharpness(hvp, x, idx, bool(scale_invariant), int(k), float(tol), int(max_basis),
                                    int(max_restarts), _start(v0, n, "v0"), int(seed))
    return SharpnessResult(
        sharpness=float(d["sharpness"]),
        top_k=d["top_k"],
        residual=float(d["residual"]),
        hvps=int(d["hvps"]),
        converged=bool(d["converged"]),
        eigenvector=d["eigenvector"],
    )


def effective_lr(lr: Any, wd: Any, w_norm: Any) -> Any:
    """Effective learning rate of GD+WD on a scale-invariant loss (Lemma 3.1):
    η̃ = η̂ / ((1 − η̂λ̂)·‖w‖²), the step of the equivalent projected GD on the
    unit sphere. Broadcasts over numpy arrays.

    >>> import eosflow
    >>> round(eosflow.effective_lr(0.5, 0.08, 2.0), 12)
    0.130208333333
    """
    if all(np.ndim(a) == 0 for a in (lr, wd, w_norm)):
        return _native.effective_lr(float(lr), float(wd), float(w_norm))
    return np.vectorize(_native.effective_lr, otypes=[np.float64])(lr, wd, w_norm)


def intrinsic_lr(lr: float, wd: float) -> float:
    """Intrinsic learning rate η_in = η̂λ̂ (Section 4.2.2): one GD+WD step
    tracks a time η_in of the sharpness-reduction flow (eq. 3)."""
    return _native.intrinsic_lr(float(lr), float(wd))


def regime(two_over_eff_lr: Any, sharpness: Any, band: float = 0.1) -> Any:
    """Where GD+WD stands against the stability threshold 2/η̃ with the
    spherical sharpness S and relative band b (eosflow's ``regime`` column):
    ``"stable"`` (2/η̃ > (1+b)S, the descent lemma holds, Lemma 4.1),
    ``"eos_above"`` (S ≤ 2/η̃ ≤ (1+b)S), ``"eos_below"`` ((1−b)S ≤ 2/η̃ < S) or
    ``"unstable"``. Broadcasts over numpy arrays.

    >>> import eosflow
    >>> eosflow.regime(2.05, 2.0, band=0.05)
    'eos_above'
    """
    if np.ndim(two_over_eff_lr) == 0 and np.ndim(sharpness) == 0:
        return _native.regime(float(two_over_eff_lr), float(sharpness), float(band))
    return np.vectorize(lambda x, s: _native.regime(float(x), float(s), float(band)), otypes=[object])(
        two_over_eff_lr, sharpness
    )


@dataclass(frozen=True)
class TraceResult:
    """What :func:`trace` found: the estimate of tr(A), its standard error
    (the sample standard deviation of the random part over √probes) and the
    operator calls."""

    estimate: float
    std_error: float
    matvecs: int


def trace(matvec: Any, dim: int | None = None, method: str = "hutch++", probes: int = 99, seed: int = 0) -> TraceResult:
    """tr(A) of a symmetric operator from matrix-vector products:
    ``"hutch++"`` (Meyer et al. 2021: a rank-probes/3 sketch taken exactly,
    Hutchinson on the rest; ``probes`` a multiple of 3) or ``"hutchinson"``
    (the mean of zᵀAz over Rademacher z). Seeded: reproducible bit for bit.
    ``matvec`` as for :func:`lanczos`.

    >>> import numpy as np, eosflow
    >>> t = eosflow.trace(np.diag([1.0, 2.0, 3.0]), probes=9)
    >>> round(t.estimate, 10)
    6.0
    """
    if method not in ("hutch++", "hutchinson"):
        raise ValueError(f'method = {method!r}: use "hutch++" or "hutchinson"')
    f, n = _operator(matvec, dim)
    d = _native.trace(f, n, method == "hutch++", int(probes), int(seed))
    return TraceResult(float(d["estimate"]), float(d["std_error"]), int(d["matvecs"]))


@dataclass(frozen=True)
class SpectralDensityResult:
    """What :func:`spectral_density` found: the density φ on ``grid``
    (integrating to 1), the absolute broadening ``sigma``, and per probe the
    Gauss quadrature ``nodes`` (Ritz values) and ``weights`` (summing to 1)."""

    grid: np.ndarray
    density: np.ndarray
    sigma: float
    nodes: list
    weights: list
    matvecs: int


def spectral_density(
    matvec: Any,
    dim: int | None = None,
    probes: int = 10,
    steps: int = 80,
    seed: int = 0,
    sigma: float = 0.01,
    grid: int = 400,
) -> SpectralDensityResult:
    """The spectral density of a symmetric operator by stochastic Lanczos
    quadrature (Lin, Saad & Yang 2016; Ghorbani et al. 2019's Hessian
    densities): ``probes`` random unit vectors, ``steps`` Lanczos steps each
    (full reorthogonalisation), the Ritz values weighted by the squared first
    components of their eigenvectors, broadened by a Gaussian of width
    ``sigma`` × the spectral range. ``matvec`` as for :func:`lanczos`."""
    f, n = _operator(matvec, dim)
    d = _native.spectral_density(f, n, int(probes), int(steps), int(seed), float(sigma), int(grid))
    return SpectralDensityResult(d["grid"], d["density"], float(d["sigma"]), d["nodes"], d["weights"],
                                 int(d["matvecs"]))


@dataclass(frozen=True)
class FlowResult:
    """The accepted points of :func:`sharpness_flow`: ``tau``, ``zeta``
    (points × D, each on Γ), the sharpness λ1(ζ) and λ2, ‖∇_Γ log λ1‖, the
    loss at ζ, how far each step landed off Γ before its retraction; why it
    stopped (``"tau_max"``, ``"stationary"``, ``"max_steps"``,
    ``"multiple_top_eigenvalue"``), accepted and rejected steps, and the
    gradient and HVP calls."""

    tau: np.ndarray
    zeta: np.ndarray
    sharpness: np.ndarray
    lambda2: np.ndarray
    grad_gamma_norm: np.ndarray
    loss: np.ndarray
    off_manifold: np.ndarray
    stop: str
    steps: int
    rejected: int
    gradients: int
    hvps: int


def sharpness_flow(
    loss_and_grad: Callable[[np.ndarray], tuple[float, Any]],
    hvp: Callable[[np.ndarray, np.ndarray], Any],
    zeta0: Any,
    tau_max: float = 1.0,
    *,
    block: Block = None,
    scale_invariant: bool = True,
    c_b: float | None = None,
    tol: float = 1e-8,
    grad_tol: float = 1e-9,
    eigengap_tol: float = 1e-3,
    max_steps: int = 100_000,
    max_step: float | None = None,
) -> FlowResult:
    """The sharpness-reduction flow on the manifold Γ of local minimisers,
    the theory's prediction of GD+WD at the Edge of Stability (Thm 4.6):

    dζ/dτ = −2G/(4 + ‖G‖²), G = ∇_Γ log λ1(ζ), τ = t·η_in (eq. 3);

    with ``c_b`` the quasi-RMSprop flow dζ/dτ = −G/(4 + (2/C_b)‖G‖²),
    τ = t·η² (eq. 8). ``zeta0`` is retracted onto Γ first (the projection
    Φ). ∇λ1 = ∇³L[v1, v1, ·] is taken by central differences of ``hvp``
    along v1; Dormand–Prince 5(4) with error control ``tol``, every point
    retracted onto Γ. ``loss_and_grad(w)`` returns (L(w), ∇L(w)),
    ``hvp(w, v)`` ∇²L(w)·v, float64. Stops at ``tau_max``, at a stationary
    point of λ1 on Γ, or where λ1 stops being simple (Assumption 4.5).
    """
    z = _point(zeta0)
    idx = block_indices(block, z.size) if scale_invariant else None
    d = _native.sharpness_flow(loss_and_grad, hvp, z, idx, bool(scale_invariant),
                               None if c_b is None else float(c_b), float(tau_max), float(tol), float(grad_tol),
                               float(eigengap_tol), int(max_steps), None if max_step is None else float(max_step))
    return FlowResult(**{k: d[k] for k in FlowResult.__dataclass_fields__})
