"""``adaptrl compare``: several strategies' adaptation curves side by side on the same
held-out tasks, with honest statistics, beside reference strategies.

Runs are grouped into strategies (same algorithm, family and settings; one run per seed).
Each strategy is meta-tested by the harness (mean, IQM and a 95% stratified-bootstrap CI of
the IQM per curve point, :func:`adaptrl.ops.stats.summarize`). Between every pair of
strategies, the probability of improvement P(X > Y) of the final score on a task (Agarwal
et al. 2021) is the Mann-Whitney U statistic over n·m (``scipy.stats.mannwhitneyu``), with
a 95% bootstrap CI (``scipy.stats.bootstrap``, each strategy's scores resampled within
each seed). The meta-training curves come from each run's ``metrics.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from adaptrl.errors import UserError

#: the reference strategies compared by default, per registered family
DEFAULT_REFERENCES = {"bandit": ("random", "gittins"), "tabular-mdp": ("random", "psrl")}


def group_runs(dirs: list[Path]) -> list[tuple[str, list[Path]]]:
    """Runs grouped into strategies, each labelled by its algorithm and the settings in
    which the strategies differ; all must share one family."""
    from adaptrl import runs

    loaded = runs.iter_runs(dirs)
    first = loaded[0][1]
    groups: dict[str, tuple[str, dict[str, Any], list[Path]]] = {}
    for path, c in loaded:
        if (c.tasks, c.task_options) != (first.tasks, first.task_options):
            raise UserError(f"{path}: runs to compare must share the task family and its "
                            f"options (first: {first.tasks})")
        opts = {**json.loads(json.dumps(c.to_json()["algo_options"])),
                "iterations": c.run.iterations}
        key = json.dumps([c.algo, opts], sort_keys=True)
        groups.setdefault(key, (c.algo, opts, []))[2].append(path)
    differ = {k for _, o, _ in groups.values() for k in o
              if len({json.dumps(g[1].get(k)) for g in groups.values()}) > 1}
    out = []
    for algo, opts, paths in groups.values():
        same_algo = sum(a == algo for a, _, _ in groups.values()) > 1
        extra = [f"{k}={_short(opts[k])}" for k in sorted(differ) if same_algo and k in opts]
        out.append((" ".join([algo, *extra]), paths))
    return out


def _short(v: Any) -> str:
    if isinstance(v, list):
        return "x".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def probability_of_improvement(x: list[np.ndarray], y: list[np.ndarray], *,
                               resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """P(X > Y) (+ half the ties) of one score of X against one of Y, over per-seed task
    scores ``x`` and ``y``, and its 95% stratified-bootstrap CI."""
    from scipy import stats

    xs = [np.asarray(s, np.float64).ravel() for s in x]
    ys = [np.asarray(s, np.float64).ravel() for s in y]
    nx = len(xs)

    def poi(*samples, axis=-1):
        a = np.concatenate(samples[:nx], axis=axis)
        b = np.concatenate(samples[nx:], axis=axis)
        u = stats.mannwhitneyu(a, b, axis=axis, method="asymptotic").statistic
        return u / (a.shape[axis] * b.shape[axis])

    point = float(poi(*xs, *ys))
    allv = np.concatenate(xs + ys)
    if np.ptp(allv) == 0 or min(sum(s.size for s in xs), sum(s.size for s in ys)) < 2:
        return {"p": point, "ci_low": point, "ci_high": point}
    res = stats.bootstrap([*xs, *ys], poi, n_resamples=resamples, method="percentile",
                          vectorized=True, rng=np.random.default_rng(seed))
    return {"p": point, "ci_low": float(res.confidence_interval.low),
            "ci_high": float(res.confidence_interval.high)}


def compare(dirs: list[Path], *, references: list[str] | None = None, num_tasks: int = 40,
            steps: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Meta-test each strategy of ``dirs`` (and the reference strategies) on the same
    held-out tasks; returns ``{"strategies", "improvement", "training"}``."""
    from adaptrl import runs
    from adaptrl.evaluation.harness import evaluate_reference, score_runs
    from adaptrl.evaluation.reference import supports

    if not dirs:
        raise UserError("compare needs run directories")
    groups = group_runs(dirs)
    first = runs.load_run(groups[0][1][0])
    tasks = first.tasks
    if references is None:
        references = list(DEFAULT_REFERENCES.get(tasks, ("random",)))
        references = [r for r in references if first.task_options.kind == "rl"
                      and _supported(supports, r, tasks)]
    results, scores = [], []
    for label, paths in groups:
        res, per, _, _ = score_runs(paths, num_tasks=num_tasks, steps=steps, seed=seed)
        res["label"] = label
        results.append(res)
        scores.append([p[res["measure"]][:, -1] for p in per])
    k = max(len(r["curve"]) for r in results) - 1
    for name in references:
        per = []
        res = evaluate_reference(name, first.task_options, tasks, steps=k, num_tasks=num_tasks,
                                 seed=seed, scores_out=per)
        res["label"] = f"{name} (reference)"
        results.append(res)
        scores.append([p[res["measure"]][:, -1] for p in per])
    sign = 1.0 if first.task_options.higher_is_better else -1.0
    improvement = []
    for i in range(len(results)):
        for j in range(len(results)):
            if i != j:
                p = probability_of_improvement([sign * s for s in scores[i]],
                                               [sign * s for s in scores[j]])
                improvement.append({"x": results[i]["label"], "y": results[j]["label"], **p})
    training = {}
    for label, paths in groups:
        training[label] = [{"run": str(p), "rows": runs.read_metrics(p)} for p in paths]
    return {"tasks": tasks, "strategies": results, "improvement": improvement,
            "training": training}


def _supported(supports, name: str, tasks: str) -> bool:
    try:
        return supports(name, tasks)
    except UserError:
        return False


def training_metric(rows: list[dict[str, float]]) -> str | None:
    """The headline meta-training metric of a metrics.csv: the last ``return_step*``,
    ``query_mse`` or ``trial_return`` column."""
    if not rows:
        return None
    keys = [k for k in rows[0] if k.startswith(("return_step", "query_mse", "trial_return",
                                                "success_step"))]
    return keys[-1] if keys else None


def plot_comparison(report: dict[str, Any], path: Path) -> Path:
    """Two panels: the adaptation curves (IQM, 95% CI band, mean dotted) of every strategy
    and reference, and the meta-training curves from metrics.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 5.5), dpi=120)
    results = report["strategies"]
    for res in results:
        xs = [p["seen"] for p in res["curve"]]
        ref = "reference" in res["label"]
        line, = ax.plot(xs, [p["iqm"] for p in res["curve"]], marker="o", ls="--" if ref else "-",
                        label=f"{res['label']}: IQM")
        ax.fill_between(xs, [p["ci_low"] for p in res["curve"]],
                        [p["ci_high"] for p in res["curve"]], color=line.get_color(), alpha=0.18)
        ax.plot(xs, [p["mean"] for p in res["curve"]], ls=":", color=line.get_color())
    first = results[0]
    if "optimum" in first:
        ax.axhline(first["optimum"], color="k", ls="-.", lw=1, label="exact optimum")
    ax.plot([], [], ls=":", color="gray", label="dotted: mean; band: 95% CI of IQM")
    units = {r["unit"] for r in results}
    ax.set_xlabel("adaptation: gradient steps (MAML) / earlier episodes seen (references)"
                  if len(units) > 1 else first["axis"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    unit = "episode return" if first["measure"] == "return" else first["measure"]
    ax.set_ylabel(f"{unit} on held-out tasks")
    ax.set_title(f"Adaptation on {first['num_tasks']} held-out {report['tasks']} tasks")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax.grid(alpha=0.3)
    plotted = False
    for label, runs_ in report["training"].items():
        metric = training_metric(runs_[0]["rows"])
        if metric is None:
            continue
        n = min(len(r["rows"]) for r in runs_)
        its = np.array([row["iteration"] for row in runs_[0]["rows"][:n]]) + 1
        vals = np.array([[row[metric] for row in r["rows"][:n]] for r in runs_])
        line, = bx.plot(its, vals.mean(0), label=f"{label} ({len(runs_)} seed(s))")
        if len(runs_) > 1:
            bx.fill_between(its, vals.min(0), vals.max(0), color=line.get_color(), alpha=0.18)
        bx.set_ylabel(f"{metric} (meta-training tasks)")
        plotted = True
    bx.set_xlabel("meta-iteration")
    bx.xaxis.set_major_locator(MaxNLocator(integer=True))
    bx.set_title("Meta-training (metrics.csv; band: min-max over seeds)")
    if plotted:
        bx.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    bx.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
