"""PNG plots of adaptation curves (Matplotlib, headless)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_curves(results: list[dict[str, Any]], path: Path, *, title: str | None = None,
                center: str = "iqm") -> Path:
    """Write :func:`curve_figure` of ``results`` as a PNG at ``path``."""
    fig = curve_figure(results, title=title, center=center)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def curve_figure(results: list[dict[str, Any]], *, title: str | None = None,
                 center: str = "iqm") -> Figure:
    """Plot IQM with its 95% CI band (and the mean, dotted) for each result; with
    ``center="mean"`` only the mean, the points' ``ci_low``/``ci_high`` then being the
    mean's interval (for 0/1 outcomes, whose IQM is 0 or 1). The x axis is each point's
    ``seen`` (whole units: integer ticks), labelled with the result's ``axis``."""
    if center not in ("iqm", "mean"):
        raise ValueError(f"center must be 'iqm' or 'mean', got {center!r}")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for res in results:
        xs = [p["seen"] for p in res["curve"]]
        ys = [p[center] for p in res["curve"]]
        stat = "IQM" if center == "iqm" else "mean"
        line, = ax.plot(xs, ys, marker="o", markersize=3 if len(xs) > 20 else 6,
                        label=f"{res['algo']} ({stat})")
        ax.fill_between(xs, [p["ci_low"] for p in res["curve"]],
                        [p["ci_high"] for p in res["curve"]], color=line.get_color(), alpha=0.2,
                        label=f"{res['algo']} (95% CI of the {stat})")
        if center == "iqm":
            ax.plot(xs, [p["mean"] for p in res["curve"]], ls=":", color=line.get_color(),
                    label=f"{res['algo']} (mean)")
    first = results[0]
    if "optimum" in first:
        ax.axhline(first["optimum"], color="k", ls="--", label="exact optimum")
    # frame the robust statistics: a mean blown up by a few diverging tasks runs off the
    # chart instead of flattening every other curve
    band = [v for r in results for p in r["curve"] for v in (p["ci_low"], p["ci_high"])]
    band += [first["optimum"]] if "optimum" in first else []
    lo, hi = min(band), max(band)
    span = hi - lo or 1.0
    means = [p["mean"] for r in results for p in r["curve"]]
    band += [m for m in means if lo - span <= m <= hi + span]  # means near the band
    lo, hi = min(band), max(band)
    pad = 0.08 * (hi - lo or abs(hi) or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    # one label per distinct axis (RL²'s episodes beside MAML's gradient steps: say both)
    axes = {r.get("axis") or r.get("unit", "").replace("_", " "): r["algo"] for r in results}
    label = axes.popitem()[0] if len(axes) == 1 else \
        "\n".join(f"{algo}: {axis}" for axis, algo in axes.items())
    ax.set_xlabel("\n".join(textwrap.fill(line, 75) for line in label.split("\n")))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(first.get("measure", "return"))
    changed = ", ".join(f"tasks.{k}={v}" for k, v in first.get("task_changes", {}).items())
    ax.set_title(title or f"{first['tasks']}: {first['num_tasks']} {first.get('split', 'test')} "
                          f"tasks, {first.get('seeds', 1)} seed(s)"
                          + (f"\nmeta-test family: {changed}" if changed else ""))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
