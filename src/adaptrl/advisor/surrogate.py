"""The surrogate: a Gaussian process (scikit-learn) over family features x strategy
settings, fit on the results store (and the prior shipped with the package), that predicts
the normalised held-out score a candidate strategy will reach on a family, with its
uncertainty; and expected improvement to choose the next real run.

One training row is one (family variant, strategy) pair: the mean over seeds of the
meta-test score (the adaptation curve's last point), normalised per family
(:func:`adaptrl.advisor.features.normalised`: 0 the random policy, 1 the optimum).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from adaptrl.advisor import features as F
from adaptrl.advisor.store import Store, family_key
from adaptrl.errors import UserError


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured (family, strategy) pair."""

    tasks: str
    family: dict[str, Any]  # the family's options
    features: dict[str, Any]  # adaptrl.advisor.features.measure_family
    algo: str
    algo_options: dict[str, Any]
    iterations: int
    scores: tuple[float, ...]  # raw meta-test scores, one per seed
    source: str = "store"  # "store" or "prior"

    @property
    def family_key(self) -> str:
        return family_key(self.tasks, self.family)

    @property
    def strategy_key(self) -> str:
        return json.dumps([self.algo, self.algo_options, self.iterations], sort_keys=True)

    @property
    def score(self) -> float:
        return float(np.mean(self.scores))

    def x(self) -> list[float]:
        return F.family_vector(self.features) + F.strategy_vector(
            self.algo, self.algo_options, self.iterations)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


def family_features(store: Store | None, tasks: str, options: dict[str, Any]) -> dict[str, Any]:
    """The family's features: from the store's cache, else measured (and cached)."""
    from adaptrl.tasks import make_family

    key = family_key(tasks, options)
    cached = store.features(key) if store is not None else None
    if cached is not None and F.complete(cached):
        return cached
    family = make_family(tasks, {k: v for k, v in options.items()})
    feats = F.measure_family(tasks, family)
    if store is not None:
        store.set_features(key, tasks, options, feats)
    return feats


def store_rows(store: Store) -> list[Row]:
    """Measured rows of the store: meta-tests of one finished run each, on the test split,
    grouped by (family, strategy), one score per seed."""
    runs = {r["run_dir"]: r for r in store.runs()}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for e in store.evals():
        dirs = json.loads(e["run_dirs"])
        if len(dirs) != 1 or dirs[0] not in runs or e["split"] != "test" or e["score"] is None:
            continue
        run = runs[dirs[0]]
        config = json.loads(run["config"])
        if config["task_options"] != json.loads(e["family"]):
            continue  # an out-of-distribution meta-test: not the family it was trained on
        key = (run["family_key"], json.dumps([config["algo"], config["algo_options"],
                                              run["iterations"]], sort_keys=True))
        g = groups.setdefault(key, {"config": config, "iterations": run["iterations"],
                                    "scores": {}})
        g["scores"][run["seed"]] = e["score"]  # the newest meta-test of each seed counts
    rows = []
    for g in groups.values():
        c = g["config"]
        rows.append(Row(c["tasks"], c["task_options"],
                        family_features(store, c["tasks"], c["task_options"]), c["algo"],
                        c["algo_options"], g["iterations"],
                        tuple(g["scores"][s] for s in sorted(g["scores"]))))
    return rows


PRIOR_FILE = "prior.json"


def prior_rows() -> list[Row]:
    """The prior shipped with the package: real runs of ours (benchmarks/advisor_holdout.py)."""
    path = resources.files("adaptrl.advisor").joinpath(PRIOR_FILE)
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return [Row(**{**r, "scores": tuple(r["scores"])}, source="prior") for r in data["rows"]]


def export_prior(store_path: Path, out: Path) -> int:
    """Write the rows of the store at ``store_path`` as the package's prior (JSON)."""
    from adaptrl.runs import atomic_write

    with Store(store_path, create=False) as store:
        rows = store_rows(store)
    atomic_write(out, json.dumps({"rows": [r.to_json() for r in rows]}, indent=1).encode())
    return len(rows)


def normalised_scores(rows: list[Row]) -> np.ndarray:
    """Each row's score normalised per family (best known where no optimum is known)."""
    best: dict[str, float] = defaultdict(lambda: -np.inf)
    for r in rows:
        sign = 1.0 if r.features["higher_is_better"] else -1.0
        best[r.family_key] = max(best[r.family_key], sign * r.score)
    return np.array([F.normalised(r.score, r.features,
                                  best[r.family_key] * (1.0 if r.features["higher_is_better"]
                                                        else -1.0)) for r in rows])


class Surrogate:
    """A GP over standardised (family features, strategy settings) -> normalised score,
    with :func:`adaptrl.advisor.kernels.kernel`."""

    def __init__(self, rows: list[Row], *, seed: int = 0):
        try:
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.gaussian_process import GaussianProcessRegressor

            from adaptrl.advisor.kernels import kernel
        except ImportError:
            raise UserError("the advisor needs scikit-learn: pip install 'adaptrl[advise]'"
                            ) from None

        if not rows:
            raise UserError("no measured runs to fit the advisor on (the store and the prior "
                            "are empty)")
        self.rows = rows
        X = np.array([r.x() for r in rows], np.float64)
        y = normalised_scores(rows)
        self.mu, self.sd = X.mean(0), X.std(0)
        self.sd[self.sd == 0] = 1.0
        self.gp = GaussianProcessRegressor(
            kernel(len(F.FAMILY_FEATURES), len(F.STRATEGY_FEATURES)), normalize_y=False,
            n_restarts_optimizer=3, random_state=seed)
        self.y_mean = float(y.mean())
        with warnings.catch_warnings():  # a length scale at its bound: an irrelevant input
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp.fit((X - self.mu) / self.sd, y - self.y_mean)

    def predict(self, xs: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted normalised score and its standard deviation per input row."""
        X = (np.array(xs, np.float64) - self.mu) / self.sd
        mean, std = self.gp.predict(X, return_std=True)
        return mean + self.y_mean, std


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, *,
                         xi: float = 0.01) -> np.ndarray:
    """EI of maximising: E[max(f - best - xi, 0)] under f ~ N(mean, std²) (Jones et al.
    1998), with SciPy's normal distribution."""
    from scipy.stats import norm

    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    gain = mean - best - xi
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std > 0, gain / std, 0.0)
    return np.where(std > 0, gain * norm.cdf(z) + std * norm.pdf(z), np.maximum(gain, 0.0))
