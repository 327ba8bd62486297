"""Data sets built into eosflow (nothing is downloaded)."""

from __future__ import annotations

import numpy as np

from . import _native


def load_digits(train_per_class: int = 100) -> dict[str, np.ndarray]:
    """The 1,797 8×8 digits split as eosflow's digits presets split them (as
    the paper builds CIFAR-10-2k, App. Q.1): the first ``train_per_class`` of
    each class in file order train, the rest test, both standardised with
    the training set's pixel mean and standard deviation. Returns
    ``x_train`` (n, 1, 8, 8) float64, ``y_train`` (n,) int64, ``x_test``,
    ``y_test``."""
    xt, yt, xs, ys, shape = _native.digits(int(train_per_class))
    return {
        "x_train": xt.reshape((-1, *shape)),
        "y_train": yt,
        "x_test": xs.reshape((-1, *shape)),
        "y_test": ys,
    }
