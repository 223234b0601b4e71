"""Leave-one-family-out test of the advisor (issue 20).

Phase 1 (measure): every candidate strategy of ``src/adaptrl/advisor/candidates.yaml`` is
trained and meta-tested on every family variant below, one seed, recorded in a benchmark
store (``runs/bench-advisor/store.sqlite``). Trials are resumable: a rerun reads finished
ones back from their run directories.

Phase 2 (holdout): for each family, the advisor is fit on the store without that family's
runs, predicts and ranks the candidates for it; we report Spearman's rank correlation
between predicted and measured normalised scores, the zero-shot pick's regret against the
best candidate, the fixed default's, and the pick after 3 expected-improvement runs (each
"run" reads the candidate's measured score: the same seed gives the same numbers).

    python benchmarks/advisor_holdout.py            # measure what is missing, then report
    python benchmarks/advisor_holdout.py --report   # report on what is measured
    python benchmarks/advisor_holdout.py --export-prior  # write the package's prior store
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import RESULTS, ROOT, command, git_commit, machine

ROOT_RUNS = ROOT / "runs" / "bench-advisor"
STORE = ROOT_RUNS / "store.sqlite"
os.environ["ADAPTRL_STORE"] = str(STORE)

#: family variants: (label, registered family, options). Bandit episodes are one pull
#: (``pulls=1``), as RL² needs (a trial of n pulls is n episodes); MAML adapts on 10 pulls.
FAMILIES = [
    ("bandit-k5", "bandit", {"arms": 5, "pulls": 1}),
    ("bandit-k10", "bandit", {"arms": 10, "pulls": 1}),
    ("tabular-mdp", "tabular-mdp", {}),
    ("point-nav", "point-nav", {}),
    ("point-nav-sparse", "point-nav-sparse", {}),
    ("tabular-mdp-s5a3", "tabular-mdp", {"states": 5, "actions": 3}),
    ("point-nav-wide", "point-nav", {"goal_low": -1.0, "goal_high": 1.0}),
]
DEFAULT = "trpo-lr0.1"  # the library's fixed default strategy (maml-trpo, inner_lr 0.1)


def measure(only: list[str] | None = None, *, seeds: int = 1, reverse: bool = False) -> None:
    """Run every (family, candidate) trial, seed 0 everywhere before seed 1."""
    from adaptrl import compilation_cache
    from adaptrl.advisor.strategies import load_candidates, run_trial

    compilation_cache.enable()
    candidates, ev = load_candidates(None)
    for seed in range(seeds):
        for label, tasks, options in FAMILIES:
            if only and label not in only:
                continue
            for s in candidates[::-1] if reverse else candidates:
                t0 = time.time()
                r = run_trial(tasks, s, seed, ROOT_RUNS / label, task_sets=options,
                              evaluation=ev)
                print(f"{label:18s} {s.name:18s} seed {seed} score {r['score']:9.3f}  "
                      f"{time.time() - t0:6.1f} s", flush=True)


def holdout_report(store_path, labels: list[str], *, default: str, bo_runs: int) -> str:
    """Leave each family out in turn (one process per family, two at a time): fit on the
    others, predict, rank, run BO."""
    import concurrent.futures as cf
    import functools
    import multiprocessing as mp

    import numpy as np

    from adaptrl import config as cfg
    from adaptrl.advisor.store import Store, family_key
    from adaptrl.advisor.strategies import load_candidates
    from adaptrl.advisor.surrogate import normalised_scores, store_rows
    from adaptrl.tasks import make_family

    with Store(store_path, create=False) as store:
        rows = store_rows(store)
    candidates, ev = load_candidates(None)
    by_key = {family_key(t, cfg.to_dict(make_family(t, o))): lab for lab, t, o in FAMILIES}
    measured = {"rows": rows, "norm": normalised_scores(rows),
                "labels": [by_key.get(r.family_key) for r in rows],
                "names": [_candidate_name(r, candidates) for r in rows], "eval": ev}
    one = functools.partial(_holdout_one, measured, default=default, bo_runs=bo_runs)
    with cf.ProcessPoolExecutor(min(2, os.cpu_count() or 1),
                                mp_context=mp.get_context("spawn")) as pool:
        done = list(pool.map(one, labels))
    lines = [line for part, _ in done for line in part]
    summary = [row for _, row in done if row is not None]
    out = ["Scores are normalised per family: 0 = a uniformly random policy, 1 = the exact "
           "optimum (the best measured score where a family knows no optimum), both on the "
           "same 200 held-out tasks (the random policy over 10 episodes each); a candidate's "
           "score is its mean return after three adaptation steps on those 200 tasks (one "
           "training seed): MAML's return after three gradient steps on 10 episodes each, "
           "RL²'s return in the fourth episode of a trial.",
           "",
           "| held-out family | candidates | Spearman | zero-shot regret | default regret | "
           "regret after 3 BO runs |", "|---|---|---|---|---|---|"]
    for r in summary:
        out.append(f"| {r['family']} | {r['n']} | {r['spearman']:.3f} | "
                   f"{r['zero_shot_regret']:.3f} | {r['default_regret']:.3f} | "
                   f"{r['bo_regret']:.3f} |")
    if summary:
        avg = {k: float(np.nanmean([r[k] for r in summary])) for k in
               ("spearman", "zero_shot_regret", "default_regret", "bo_regret")}
        out.append(f"| **average** | | **{avg['spearman']:.3f}** | "
                   f"**{avg['zero_shot_regret']:.3f}** | **{avg['default_regret']:.3f}** | "
                   f"**{avg['bo_regret']:.3f}** |")
        undefined = [r["family"] for r in summary if not np.isfinite(r["spearman"])]
        if undefined:
            out += ["", f"Spearman is undefined for {', '.join(undefined)} (the GP predicted "
                    "one score for every candidate); the average is over the other "
                    f"{len(summary) - len(undefined)} families."]
        out += ["", "Targets: Spearman >= 0.6 averaged "
                f"({'met' if avg['spearman'] >= 0.6 else 'NOT met'}); zero-shot pick within "
                f"0.10 of the best ({'met' if avg['zero_shot_regret'] <= 0.10 else 'NOT met'})"
                " and better than the fixed default ("
                f"{'met' if avg['zero_shot_regret'] < avg['default_regret'] else 'NOT met'}); "
                f"within 0.05 after 3 BO runs ({'met' if avg['bo_regret'] <= 0.05 else 'NOT met'})."]
        done = len(summary)
        if done < len(labels):
            out.append(f"\nPARTIAL: {done} of {len(labels)} families measured.")
    return "\n".join(out + lines)


def _holdout_one(measured: dict, label: str, *, default: str, bo_runs: int
                 ) -> tuple[list[str], dict | None]:
    """The held-out family ``label``: its table lines and summary row (None: too few
    candidates measured). ``measured``: the store's rows, their normalised scores, family
    labels and candidate names, and the meta-test settings (read once by the caller)."""
    import numpy as np
    from scipy.stats import spearmanr

    from adaptrl.advisor.surrogate import Surrogate, expected_improvement

    rows, norm = measured["rows"], measured["norm"]
    lines: list[str] = []
    held = [i for i, lab in enumerate(measured["labels"]) if lab == label]
    rest = [i for i, lab in enumerate(measured["labels"]) if lab != label]
    if len(held) < 2 or not rest:
        return [f"\n## {label}: PARTIAL, {len(held)} candidate(s) measured; skipped\n"], None
    model = Surrogate([rows[i] for i in rest])
    mean, std = model.predict([rows[i].x() for i in held])
    y = norm[held]
    rho = float(spearmanr(mean, y).statistic) if np.ptp(y) > 0 else float("nan")
    best = float(y.max())
    pick = int(np.argmax(mean))
    names = [measured["names"][i] for i in held]
    d = names.index(default) if default in names else None
    # BO: EI over the held-out family's candidates, refit after each measured one
    ran: list[int] = []
    m, sd = mean, std
    for _ in range(min(bo_runs, len(held))):
        incumbent = max((y[j] for j in ran), default=float(m.max()))
        ei = expected_improvement(m, sd, incumbent)
        ei[ran] = -np.inf
        ran.append(int(np.argmax(ei)))
        refit = Surrogate([rows[i] for i in rest] + [rows[held[j]] for j in ran])
        m, sd = refit.predict([rows[i].x() for i in held])
    bo_pick = max(ran, key=lambda j: y[j]) if ran else pick
    ci = [_iqm_ci(label, names[j], rows[held[j]].features, measured["eval"])
          for j in range(len(held))]
    lines.append(f"\n## held out: {label}\n")
    lines.append("| candidate | predicted (± 1 sd) | measured | 95% CI of its IQM | "
                 "raw score |")
    lines.append("|---|---|---|---|---|")
    for j in np.argsort(-mean, kind="stable"):
        tag = " **zero-shot pick**" if j == pick else ""
        tag += " (default)" if j == d else ""
        lines.append(f"| {names[j]}{tag} | {mean[j]:.3f} ± {std[j]:.3f} | {y[j]:.3f} | "
                     f"[{ci[j][0]:.3f}, {ci[j][1]:.3f}] | {rows[held[j]].score:.3f} |")
    row = {"family": label, "spearman": rho, "zero_shot_regret": best - y[pick],
           "default_regret": best - y[d] if d is not None else float("nan"),
           "bo_regret": best - y[bo_pick], "bo_runs": [names[j] for j in ran],
           "n": len(held)}
    width = float(np.median([hi - lo for lo, hi in ci]))
    lines.append(f"\nMeasured scores span {np.ptp(y):.3f}; the median 95% CI of one "
                 f"score's IQM is {width:.3f} wide"
                 + (" (the candidates are within noise of each other: their order is "
                    "mostly chance)" if np.ptp(y) < width else "") + ".")
    lines.append(f"\nSpearman {rho:.3f}; regret (best measured minus pick, normalised): "
                 f"zero-shot {row['zero_shot_regret']:.3f}, fixed default "
                 f"{row['default_regret']:.3f}, after {len(ran)} BO runs "
                 f"({', '.join(row['bo_runs'])}) {row['bo_regret']:.3f}")
    return lines, row


def _iqm_ci(label: str, name: str, features: dict, ev: dict) -> tuple[float, float]:
    """The normalised 95% CI of the IQM of a trial's meta-test (seed 0, meta-test settings
    ``ev``), from its record."""
    import json

    from adaptrl.advisor.features import normalised

    for f in sorted((ROOT_RUNS / label / f"{name}-seed0" / "evals").glob("*.json")):
        result = json.loads(f.read_text())["result"]
        if result["num_tasks"] == ev["num_tasks"] and \
                len(result["curve"]) == ev["adapt_steps"] + 1:
            point = result["curve"][-1]
            return (normalised(point["ci_low"], features),
                    normalised(point["ci_high"], features))
    return float("nan"), float("nan")


def _candidate_name(row, candidates) -> str:
    """The name of the candidate (of ``candidates``) that ``row`` measured."""
    from adaptrl.advisor.strategies import resolve_strategy

    for s in candidates:
        c = resolve_strategy(s, row.tasks, seed=0, task_sets=_options_of(row.tasks, row.family))
        if c.algo == row.algo and c.to_json()["algo_options"] == row.algo_options and \
                c.run.iterations == row.iterations:
            return s.name
    return row.algo


def _options_of(tasks: str, family: dict) -> dict:
    fits = [o for _, t, o in FAMILIES
            if t == tasks and all(family.get(k) == v for k, v in o.items())]
    return max(fits, key=len, default={})  # the most specific variant


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--report", action="store_true", help="only report on what is measured")
    p.add_argument("--measure-only", action="store_true")
    p.add_argument("--families", nargs="*", help="measure only these family labels")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per trial")
    p.add_argument("--reverse", action="store_true",
                   help="candidates in reverse order (a second process from the other end)")
    p.add_argument("--export-prior", action="store_true",
                   help="write src/adaptrl/advisor/prior.json from the benchmark store")
    args = p.parse_args()
    if not args.report and not args.export_prior:
        measure(args.families, seeds=args.seeds, reverse=args.reverse)
    if args.measure_only:
        return
    from adaptrl.advisor.surrogate import export_prior

    if args.export_prior:
        n = export_prior(STORE, ROOT / "src" / "adaptrl" / "advisor" / "prior.json")
        print(f"prior: {n} meta-test records")
        return
    text = holdout_report(STORE, [f[0] for f in FAMILIES], default=DEFAULT, bo_runs=3)
    print(text)
    header = (f"# Advisor: leave-one-family-out\n\nCommand: `{command()}` (commit "
              f"{git_commit()}); the trials before it with `--measure-only`, see "
              f"advisor.md.\n\nMachine: {machine()}.\n\n")
    (RESULTS / "advisor_holdout.md").write_text(header + text + "\n")


if __name__ == "__main__":
    sys.exit(main())
