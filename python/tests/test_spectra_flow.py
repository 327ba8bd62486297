"""Trace, spectral density and the sharpness-reduction flow on Python
callables, against dense linear algebra and App. F's closed forms."""

from __future__ import annotations

import numpy as np
import pytest

import eosflow

EPS = np.finfo(float).eps


def sym(rng, n, ev):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * ev) @ q.T


def test_hutch_pp_with_a_full_sketch_is_exact_and_otherwise_within_its_error():
    rng = np.random.default_rng(0)
    a = sym(rng, 30, np.linspace(-2, 10, 30))
    exact = np.trace(a)
    # probes = 3n: the sketch spans the whole space, so only rounding is left.
    full = eosflow.trace(a, probes=90)
    assert abs(full.estimate - exact) <= 1e3 * 30 * EPS * np.abs(a).max()
    for method in ("hutch++", "hutchinson"):
        t = eosflow.trace(a, method=method, probes=24, seed=3)
        assert t.matvecs == 24
        assert abs(t.estimate - exact) <= 5 * t.std_error  # seeded: deterministic
    with pytest.raises(ValueError, match="method"):
        eosflow.trace(a, method="exact")


def test_spectral_density_is_a_density_on_the_spectrum():
    rng = np.random.default_rng(1)
    ev = np.r_[np.zeros(20), np.linspace(1, 3, 20)]
    a = sym(rng, 40, ev)
    d = eosflow.spectral_density(a, probes=8, steps=40)
    for nodes, w in zip(d.nodes, d.weights):
        assert nodes.min() >= ev.min() - 1e-9 and nodes.max() <= ev.max() + 1e-9
        assert abs(w.sum() - 1) < 1e-12
    integral = np.sum(d.density) * (d.grid[1] - d.grid[0])
    assert abs(integral - 1) < 1e-3
    # half the eigenvalues are 0: about half the mass lies below 0.5
    below = np.sum(d.density[d.grid < 0.5]) * (d.grid[1] - d.grid[0])
    assert abs(below - 0.5) < 0.15


def toy3d():
    """App. F's L(w) = F(w), F(x, y, z) = 2 − (x+y)/√(x² − xy + y²)
    (scale-invariant; Γ = {x = y > 0}), in JAX."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import eosflow.jax

    def loss(w):
        x, y = w[0], w[1]
        return 2 - (x + y) / jnp.sqrt(x * x - x * y + y * y)

    return eosflow.jax.loss_and_grad(loss), eosflow.jax.hvp(loss)


def test_flow_on_toy3d_follows_app_f_to_zeta_star():
    lg, hvp = toy3d()
    z = 0.6
    r = np.sqrt((1 - z * z) / 2)
    f = eosflow.sharpness_flow(lg, hvp, np.array([r, r, z]), tau_max=20.0)
    assert f.stop in ("tau_max", "stationary")
    zeta = f.zeta
    # every point on Γ ∩ sphere (retraction tolerance), λ1 = 6/(1 − z²) there
    np.testing.assert_allclose(np.linalg.norm(zeta, axis=1), 1, atol=1e-10)
    np.testing.assert_allclose(zeta[:, 0], zeta[:, 1], atol=1e-9)
    np.testing.assert_allclose(f.sharpness, 6 / (1 - zeta[:, 2] ** 2), rtol=1e-8)
    assert np.all(np.diff(f.sharpness) <= 1e-9)  # the flow reduces the sharpness
    assert abs(zeta[-1, 2]) < 1e-6 and abs(f.sharpness[-1] - 6) < 1e-9  # ζ* of App. F
    assert f.gradients > 0 and f.hvps > 0


def test_flow_errors_from_the_callables_propagate():
    lg, hvp = toy3d()

    class Stop(Exception):
        pass

    calls = []

    def bad_hvp(w, v):
        calls.append(1)
        if len(calls) > 5:
            raise Stop("hvp failed")
        return hvp(w, v)

    with pytest.raises(Stop, match="hvp failed"):
        eosflow.sharpness_flow(lg, bad_hvp, np.array([0.5, 0.5, 0.7]), tau_max=5.0)
    with pytest.raises(ValueError, match="pair"):
        eosflow.sharpness_flow(lambda w: 1.0, hvp, np.array([0.5, 0.5, 0.7]))
