"""``adaptrl advise``: predict, for a family, the normalised held-out score each candidate
strategy will reach, rank them, and optionally spend a budget of real runs chosen by
expected improvement (Bayesian optimisation), refitting after each.

The surrogate is fit on the user's store plus the prior shipped with the package, so a
family never seen gets a prediction before any run; a family with no comparable runs is
said so, and its uncertainty is what the GP gives far from its data (wide).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from adaptrl import config as cfg
from adaptrl.advisor import features as F
from adaptrl.advisor.store import Store, family_key
from adaptrl.advisor.strategies import Strategy, load_candidates, resolve_strategy, run_trial
from adaptrl.advisor.surrogate import (
    Row,
    Surrogate,
    expected_improvement,
    family_features,
    normalised_scores,
    prior_rows,
    store_rows,
)
from adaptrl.errors import UserError


def _training_rows(store: Store) -> list[Row]:
    """The store's rows, and the prior's where the store has no such (family, strategy)."""
    own = store_rows(store)
    seen = {(r.family_key, r.strategy_key) for r in own}
    return own + [r for r in prior_rows() if (r.family_key, r.strategy_key) not in seen]


def _measured(rows: list[Row], key: str) -> dict[str, tuple[float, int]]:
    """Normalised measured score and seed count by strategy key, for family ``key``."""
    norm = normalised_scores(rows)
    return {r.strategy_key: (float(y), len(r.scores))
            for r, y in zip(rows, norm, strict=True) if r.family_key == key}


@dataclasses.dataclass
class _Candidate:
    strategy: Strategy
    algo_options: dict[str, Any]
    iterations: int

    @property
    def key(self) -> str:
        import json

        return json.dumps([self.strategy.algo, self.algo_options, self.iterations],
                          sort_keys=True)


def predict(rows: list[Row], feats: dict[str, Any], cands: list[_Candidate]
            ) -> tuple[np.ndarray, np.ndarray]:
    """The surrogate's predicted normalised score and standard deviation per candidate."""
    model = Surrogate(rows)
    xs = [F.family_vector(feats) + F.strategy_vector(c.strategy.algo, c.algo_options,
                                                     c.iterations) for c in cands]
    return model.predict(xs)


def advise(tasks: str, options: dict[str, Any], *, path: Path, candidates: Path | None = None,
           budget: int = 0, out_dir: Path | None = None,
           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Rank the candidates for ``tasks`` (with ``options``); see the module docstring."""
    from adaptrl.tasks import make_family

    if budget < 0 or budget > 100:
        raise UserError(f"--budget must be between 0 and 100, got {budget}")
    strategies, ev = load_candidates(candidates)
    family = make_family(tasks, options)  # refuses unknown families and options first
    cands, skipped = [], []
    for s in strategies:
        try:  # a candidate that cannot run on this family (RL² on a multi-pull bandit, say)
            c = resolve_strategy(s, tasks, seed=0, task_sets=options)
        except UserError as e:
            skipped.append(str(e))
            continue
        cands.append(_Candidate(s, c.to_json()["algo_options"], c.run.iterations))
    if not cands:
        raise UserError(f"no candidate strategy runs on {tasks}: {skipped[0]}")
    fam_options = cfg.to_dict(family)
    key = family_key(tasks, fam_options)
    with Store(path) as store:
        feats = family_features(store, tasks, fam_options)
        rows = _training_rows(store)
    comparable = [r for r in rows if r.family_key == key]
    report: dict[str, Any] = {"tasks": tasks, "family": fam_options, "features": feats,
                              "comparable_runs": sum(len(r.scores) for r in comparable),
                              "training_rows": len(rows), "store": str(path)}
    if skipped:
        report["skipped"] = skipped
        if log:
            for line in skipped:
                log(f"skipped: {line}")
    if not rows:
        raise UserError(f"no measured runs to fit the advisor on ({path} is empty and the "
                        "package has no prior)")
    if not comparable:
        report["note"] = (f"no comparable runs of {tasks} in the store: predictions come from "
                          "the prior and other families, with wide uncertainty")
        if log:
            log(report["note"])
    mean, std = predict(rows, feats, cands)
    measured = _measured(rows, key)
    report["candidates"] = _ranked(cands, mean, std, measured)
    bo: list[dict[str, Any]] = []
    for _ in range(budget):
        best = max((m for m, _ in measured.values()), default=float(np.max(mean)))
        ei = expected_improvement(mean, std, best)
        open_ = [i for i, c in enumerate(cands) if c.key not in measured]
        if not open_:
            if log:
                log("every candidate is measured: the budget stops here")
            break
        i = max(open_, key=lambda j: ei[j])
        c = cands[i]
        if log:
            log(f"BO run {len(bo) + 1}/{budget}: {c.strategy.name} (predicted "
                f"{mean[i]:.3f} ± {std[i]:.3f}, EI {ei[i]:.4f})")
        root = out_dir or Path("runs") / f"advise-{tasks}"
        run_trial(tasks, c.strategy, 0, root, task_sets=options, evaluation=ev)
        with Store(path) as store:
            rows = _training_rows(store)
        measured = _measured(rows, key)
        if c.key not in measured:
            raise UserError(f"the run of {c.strategy.name} was not recorded in {path}")
        bo.append({"name": c.strategy.name, "predicted": float(mean[i]),
                   "std": float(std[i]), "ei": float(ei[i]), "measured": measured[c.key][0]})
        mean, std = predict(rows, feats, cands)
    if budget:
        report["bo"] = bo
        report["candidates"] = _ranked(cands, mean, std, measured)
    return report


def _ranked(cands: list[_Candidate], mean, std, measured) -> list[dict[str, Any]]:
    out = []
    for i in np.argsort(-np.asarray(mean), kind="stable"):
        c = cands[int(i)]
        row = {"name": c.strategy.name, "algo": c.strategy.algo, "set": dict(c.strategy.sets),
               "predicted": float(mean[i]), "std": float(std[i])}
        if c.key in measured:
            row["measured"], row["seeds"] = measured[c.key]
        out.append(row)
    return out


def tables(report: dict[str, Any]) -> list:
    """The report as Rich tables: the ranking, and predicted against measured."""
    from rich.table import Table

    cap = ["score: 0 = a random policy, 1 = the exact optimum (or the best known)",
           f"fit on {report['training_rows']} (family, strategy) results "
           f"(store {report['store']} and the shipped prior)"]
    if "note" in report:
        cap.insert(0, report["note"])
    t = Table(title=f"advise: predicted normalised held-out score on {report['tasks']}",
              caption="\n".join(cap), caption_justify="left")
    for col in ("rank", "candidate", "algo", "predicted", "± 1 sd", "measured"):
        t.add_column(col, justify="left" if col in ("candidate", "algo") else "right")
    for rank, c in enumerate(report["candidates"], 1):
        t.add_row(str(rank), c["name"], c["algo"], f"{c['predicted']:.3f}", f"{c['std']:.3f}",
                  f"{c['measured']:.3f}" if "measured" in c else "-")
    out = [t]
    if report.get("bo"):
        b = Table(title="Bayesian optimisation (expected improvement): predicted vs measured")
        for col in ("run", "candidate", "predicted", "± 1 sd", "EI", "measured"):
            b.add_column(col, justify="left" if col == "candidate" else "right")
        for i, r in enumerate(report["bo"], 1):
            b.add_row(str(i), r["name"], f"{r['predicted']:.3f}", f"{r['std']:.3f}",
                      f"{r['ei']:.4f}", f"{r['measured']:.3f}")
        out.append(b)
    return out
