"""eosflow.lanczos and eosflow.spherical_sharpness on Python operators,
against numpy's dense eigendecomposition and the paper's identities."""

from __future__ import annotations

import numpy as np
import pytest

import eosflow

EPS = np.finfo(float).eps


def sym(rng, n, eigenvalues):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * eigenvalues) @ q.T


def check_pairs(a, res, expected):
    # An eigenvalue with residual r is within r of the spectrum, and Lanczos
    # stops at r ≤ tol·max|θ|; the extra 100·n·ε‖A‖ is the rounding of
    # forming A·x and of eigh itself.
    n = a.shape[0]
    norm = np.abs(np.linalg.eigvalsh(a)).max()
    tol = 1e-10 * norm + 100 * n * EPS * norm
    np.testing.assert_allclose(res.eigenvalues, expected, rtol=0, atol=tol)
    for i, lam in enumerate(res.eigenvalues):
        y = res.eigenvectors[:, i]
        assert abs(np.linalg.norm(y) - 1) < 1e-12
        # the reported residual is the true one
        assert abs(np.linalg.norm(a @ y - lam * y) - res.residuals[i]) <= 10 * n * EPS * norm


def test_lanczos_matches_eigh_on_a_random_symmetric_matrix():
    rng = np.random.default_rng(0)
    a = sym(rng, 60, np.linspace(-3, 7, 60))
    res = eosflow.lanczos(lambda x: a @ x, dim=60, k=4)
    assert res.converged
    check_pairs(a, res, np.sort(np.linalg.eigvalsh(a))[::-1][:4])
    assert res.matvecs > 0


def test_indefinite_matrix_gives_the_largest_algebraic_not_largest_magnitude():
    rng = np.random.default_rng(1)
    a = sym(rng, 30, np.r_[-50.0, np.linspace(-1, 2, 29)])
    res = eosflow.lanczos(a, k=1)
    check_pairs(a, res, [2.0])
    low = eosflow.lanczos(a, k=2, which="SA")
    check_pairs(a, low, np.sort(np.linalg.eigvalsh(a))[:2])


def test_a_cluster_of_eigenvalues_is_resolved():
    rng = np.random.default_rng(2)
    ev = np.r_[5.0, 5.0 - 1e-6, 5.0 - 2e-6, np.linspace(0, 4, 47)]
    a = sym(rng, 50, ev)
    res = eosflow.lanczos(a, k=3, tol=1e-12)
    assert res.converged
    check_pairs(a, res, np.sort(ev)[::-1][:3])


def test_scipy_linear_operator_and_seeded_reproducibility():
    sla = pytest.importorskip("scipy.sparse.linalg")
    rng = np.random.default_rng(3)
    a = sym(rng, 40, np.linspace(0, 1, 40))
    op = sla.LinearOperator((40, 40), matvec=lambda x: a @ x, dtype=np.float64)
    r1 = eosflow.lanczos(op, k=2, seed=7)
    r2 = eosflow.lanczos(op, k=2, seed=7)
    check_pairs(a, r1, np.sort(np.linalg.eigvalsh(a))[::-1][:2])
    assert np.array_equal(r1.eigenvalues, r2.eigenvalues)  # bit for bit


class Boom(Exception):
    pass


def test_an_exception_of_the_callable_propagates_with_its_traceback():
    calls = []
    d = np.arange(1.0, 11.0)

    def matvec(x):
        calls.append(1)
        if len(calls) == 3:
            raise Boom("third call")
        return d * x

    with pytest.raises(Boom, match="third call") as info:
        eosflow.lanczos(matvec, dim=10, k=1)
    assert any(tb.name == "matvec" for tb in info.traceback)
    assert len(calls) == 3  # not called again after the error


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda x: np.ones(4), r"shape \[4\]; expected \(5,\)"),
        (lambda x: x.astype(np.float32), "dtype float32; it must return float64"),
        (lambda x: np.ones((5, 1)), r"shape \[5, 1\]"),
    ],
)
def test_a_wrong_output_is_a_clear_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        eosflow.lanczos(bad, dim=5)


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="k = 6"):
        eosflow.lanczos(np.eye(5), k=6)
    with pytest.raises(ValueError, match="which"):
        eosflow.lanczos(np.eye(5), which="LM")
    with pytest.raises(ValueError, match="dim is required"):
        eosflow.lanczos(lambda x: x)
    with pytest.raises(ValueError, match="square"):
        eosflow.lanczos(np.ones((3, 4)))


def si_quadratic(rng, n):
    """L(w) = θᵀAθ with θ = w/‖w‖: scale-invariant, with an exact HVP."""
    a = sym(rng, n, np.linspace(-1, 4, n))

    def hvp(w, v):
        r2 = w @ w
        th = w / np.sqrt(r2)
        l = th @ a @ th
        g_th = 2 * a @ th  # ∇_θ of θᵀAθ
        # L(w) = wᵀAw / wᵀw; its Hessian: 2/r²·(A − L·I − 2(Aw wᵀ + w wᵀA)/r² + 4L w wᵀ/r²) ... written out:
        aw = a @ w
        return 2.0 / r2 * (a @ v - l * v - 2 * (aw * (w @ v) + w * (aw @ v)) / r2 + 4 * l * w * (w @ v) / r2)

    return a, hvp


def dense_hessian(hvp, w):
    n = w.size
    return np.column_stack([hvp(w, e) for e in np.eye(n)])


def test_spherical_sharpness_is_the_hessian_at_theta_and_scale_invariant():
    rng = np.random.default_rng(4)
    a, hvp = si_quadratic(rng, 12)
    w = rng.standard_normal(12)
    theta = w / np.linalg.norm(w)
    expected = np.linalg.eigvalsh(dense_hessian(hvp, theta)).max()
    s1 = eosflow.spherical_sharpness(hvp, w)
    s2 = eosflow.spherical_sharpness(hvp, 7.5 * w)
    # λ1 ≈ 10: Lanczos to 1e-10 relative, plus rounding of the HVPs.
    assert abs(s1.sharpness - expected) <= 1e-9 * abs(expected)
    assert abs(s2.sharpness - s1.sharpness) <= 1e-9 * abs(expected)  # Lemma D.1: (−2)-homogeneous
    assert s1.converged and s1.hvps > 0


def test_spherical_sharpness_on_a_block_and_without_invariance():
    h = np.diag([4.0, 1.0, 9.0])
    w = np.array([0.0, 2.0, 5.0])
    s = eosflow.spherical_sharpness(lambda w, v: h @ v, w, block=[0, 1])
    assert abs(s.sharpness - 16.0) < 1e-12 and s.eigenvector.shape == (2,)
    mask = np.array([True, True, False])
    assert eosflow.spherical_sharpness(lambda w, v: h @ v, w, block=mask).sharpness == s.sharpness
    plain = eosflow.spherical_sharpness(lambda w, v: h @ v, w, scale_invariant=False)
    assert abs(plain.sharpness - 9.0) < 1e-12
    with pytest.raises(ValueError, match="float64"):
        eosflow.spherical_sharpness(lambda w, v: h @ v, w.astype(np.float32))


def test_effective_lr_and_regime_follow_lemma_3_1_and_the_band():
    assert eosflow.effective_lr(0.5, 0.08, 2.0) == 0.5 / ((1 - 0.04) * 4.0)
    arr = eosflow.effective_lr(0.5, 0.08, np.array([1.0, 2.0]))
    np.testing.assert_array_equal(arr, 0.5 / (0.96 * np.array([1.0, 4.0])))
    assert eosflow.intrinsic_lr(0.5, 0.08) == 0.04
    assert [eosflow.regime(x, 2.0, band=0.05) for x in (3.0, 2.05, 1.95, 1.0)] == [
        "stable", "eos_above", "eos_below", "unstable"]
    with pytest.raises(ValueError, match="band"):
        eosflow.regime(1.0, 1.0, band=2.0)
