"""Runs from Python: the presets and configs through eosflow's runner, and
run directories read back into numpy."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import numpy as np

from . import _native

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[None, bool, Callable[[int, int, dict], Any]]


def _toml_value(v: Any) -> str:
    """A Python value as the right-hand side of ``--set KEY=VALUE``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (str, os.PathLike)):
        return json.dumps(os.fspath(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} ({type(v).__name__}) as a config value")


def _sets(set: Mapping[str, Any] | None, steps: int | None) -> list[str]:
    out = [f"{k}={_toml_value(v)}" for k, v in (set or {}).items()]
    if steps is not None:
        out.append(f"run.steps={int(steps)}")
    return out


def _progress(progress: Progress) -> Callable[[int, int, dict], Any] | None:
    """The callback for a run: a callable as given; None (default) a tqdm bar
    when tqdm is installed, else nothing; False nothing."""
    if progress is False:
        return None
    if callable(progress):
        return progress
    if progress not in (None, True):
        raise TypeError("progress must be None, True, False or a callable (step, total, info)")
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress is True:
            raise ImportError("progress=True needs tqdm (pip install tqdm), or pass a callable") from None
        return None
    bar: dict[str, Any] = {}

    def update(step: int, total: int, info: dict) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, unit="step")
        b = bar["bar"]
        b.update(step - b.n)
        if "loss" in info:
            b.set_postfix(loss=f"{info['loss']:.3e}", refresh=False)
        if step >= total:
            b.close()

    return update


def _table(path: Path) -> dict[str, np.ndarray]:
    names, cols = _native.read_csv(str(path))
    return {n: (c if isinstance(c, np.ndarray) else np.asarray(c, dtype=object)) for n, c in zip(names, cols)}


class Run:
    """A run directory written by eosflow (``eosflow run``/``reproduce``, this
    package, or :class:`EoSMonitor`), read lazily.

    - ``config``: the resolved config (dict, every default written out);
    - ``summary``: summary.json (dict): status, final and maximal sharpness,
      EoS entry step, the problem's own results, ``timing``;
    - ``metrics``: metrics.csv as ``{column: ndarray}`` (``step``, ``loss``,
      ``grad_norm`` = ‖∇L(θ_t)‖, ``w_norm``, ``eff_lr`` = η̃_t, ``two_over_eff_lr``,
      ``sharpness`` (NaN where not evaluated), ``regime``, the problem's
      columns);
    - ``sharpness``: sharpness.csv (``step``, ``sharpness``, ``lambda_2``…,
      ``residual``, ``hvps``, ``converged``);
    - ``w_final``: the last parameters (w_final.npy);
    - ``to_pandas(table)``: one table as a DataFrame (needs pandas).
    """

    def __init__(self, path: PathLike):
        self.dir = Path(path)
        if not (self.dir / "config.toml").is_file():
            raise FileNotFoundError(f"{self.dir} does not look like a run directory (no config.toml)")
        self._cache: dict[str, Any] = {}

    def __repr__(self) -> str:
        s = self.summary
        return (f"Run({str(self.dir)!r}, status={s.get('status')!r}, last_step={s.get('last_step')}, "
                f"final_sharpness={s.get('final_sharpness')})")

    def _get(self, key: str, load: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    @property
    def config(self) -> dict:
        return self._get("config", lambda: tomllib.loads((self.dir / "config.toml").read_text()))

    @property
    def summary(self) -> dict:
        def load() -> dict:
            p = self.dir / "summary.json"
            return json.loads(p.read_text()) if p.is_file() else {}
        return self._get("summary", load)

    @property
    def status(self) -> str | None:
        return self.summary.get("status")

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        return self._get("metrics", lambda: _table(self.dir / "metrics.csv"))

    @property
    def sharpness(self) -> dict[str, np.ndarray]:
        def load() -> dict[str, np.ndarray]:
            p = self.dir / "sharpness.csv"
            return _table(p) if p.is_file() else {}
        return self._get("sharpness", load)

    @property
    def w_final(self) -> np.ndarray:
        return self._get("w_final", lambda: np.load(self.dir / "w_final.npy"))

    @property
    def figures(self) -> list[Path]:
        return [self.dir / f for f in self.summary.get("figures", [])]

    def to_pandas(self, table: str = "metrics"):
        """``table`` ("metrics", "sharpness") as a pandas DataFrame."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas (pip install pandas)") from None
        if table not in ("metrics", "sharpness"):
            raise ValueError(f'table = {table!r}: use "metrics" or "sharpness"')
        return pd.DataFrame(getattr(self, table))


def load_run(path: PathLike) -> Run:
    """Reads a run directory (eosflow's schema: config.toml, metrics.csv,
    sharpness.csv, summary.json, w_final.npy)."""
    return Run(path)


def _finish(d: dict) -> Run:
    return Run(d["dir"])


def reproduce(
    preset: str,
    out: PathLike | None = None,
    *,
    steps: int | None = None,
    set: Mapping[str, Any] | None = None,
    force: bool = False,
    progress: Progress = None,
) -> Run:
    """Runs one of the paper's single-run presets (``eosflow reproduce
    PRESET``; see :func:`presets`) into ``out`` (default
    ``runs/<name>-<timestamp>``) and returns the :class:`Run`. ``set``
    overrides config keys (``{"optimizer.wd": 1e-3}``, as ``--set``),
    ``steps`` the number of updates. The run releases the GIL; ``progress``
    gets ``(step, total, info)`` about ten times a second (default: a tqdm bar
    when tqdm is installed). Ctrl-C (KeyboardInterrupt) stops it after the
    current step with the directory written and resumable
    (:func:`resume`), then raises.
    """
    d = _native.reproduce(preset, None if out is None else os.fspath(out), bool(force), _sets(set, steps),
                          _progress(progress))
    return _finish(d)


def _config_text(config: Mapping[str, Any] | PathLike) -> tuple[str, str]:
    if isinstance(config, Mapping):
        return _native.json_to_toml(json.dumps(config, default=os.fspath)), "<dict>"
    p = Path(config)
    try:
        return p.read_text(), str(p)
    except OSError as e:
        raise FileNotFoundError(f"cannot read the config {p}: {e}") from None


def run(
    config: Mapping[str, Any] | PathLike,
    out: PathLike | None = None,
    *,
    steps: int | None = None,
    set: Mapping[str, Any] | None = None,
    force: bool = False,
    progress: Progress = None,
) -> Run:
    """Runs a config — a dict of sections (``{"problem": {"kind": "toy3d"},
    "optimizer": {...}, "run": {...}}``, the TOML schema of the README) or a
    path to a TOML file — as ``eosflow run`` does, byte for byte, and returns
    the :class:`Run`. Other arguments as for :func:`reproduce`; relative
    paths in a dict are relative to the working directory."""
    text, origin = _config_text(config)
    d = _native.run_toml(text, origin, None if out is None else os.fspath(out), bool(force), _sets(set, steps),
                         _progress(progress))
    return _finish(d)


def resume(path: PathLike, *, steps: int | None = None, progress: Progress = None) -> Run:
    """Continues a run directory from its last checkpoint (after Ctrl-C, a
    kill or a crash; before the first checkpoint it starts again from step
    0), as ``eosflow resume``: the files end as if the run had never stopped.
    ``steps`` extends it. A complete run is returned as it is."""
    d = _native.resume(os.fspath(path), steps, _progress(progress))
    return Run(path) if d is None else _finish(d)


def config(preset_or_config: str | Mapping[str, Any] | PathLike, set: Mapping[str, Any] | None = None) -> dict:
    """The resolved config of a preset name, a dict or a TOML file, every
    default written out (what the run directory's config.toml will hold)."""
    sets = _sets(set, None)
    if isinstance(preset_or_config, str) and not preset_or_config.endswith(".toml") \
            and not Path(preset_or_config).exists():
        text = _native.resolve_config(preset_or_config, None, "", sets)
    else:
        t, origin = _config_text(preset_or_config)
        text = _native.resolve_config(None, t, origin, sets)
    return tomllib.loads(text)


def presets() -> list[dict[str, str]]:
    """The presets: name, the paper's figure, what it shows, expected time."""
    return [{"name": n, "figure": f, "shows": s, "time": t} for n, f, s, t in _native.presets()]
