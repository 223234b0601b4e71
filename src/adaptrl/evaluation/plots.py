"""PNG plots of adaptation curves (Matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(results: list[dict[str, Any]], path: Path, *, title: str | None = None,
                center: str = "iqm") -> Path:
    """Plot IQM with its 95% CI band (and the mean, dotted) for each result; with
    ``center="mean"`` only the mean, the points' ``ci_low``/``ci_high`` then being the
    mean's interval (for 0/1 outcomes, whose IQM is 0 or 1)."""
    if center not in ("iqm", "mean"):
        raise ValueError(f"center must be 'iqm' or 'mean', got {center!r}")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for res in results:
        xs = [p["adaptation_steps"] for p in res["curve"]]
        ys = [p[center] for p in res["curve"]]
        line, = ax.plot(xs, ys, marker="o", markersize=3 if len(xs) > 20 else 6,
                        label=f"{res['algo']} ({'IQM' if center == 'iqm' else 'mean'})")
        ax.fill_between(xs, [p["ci_low"] for p in res["curve"]],
                        [p["ci_high"] for p in res["curve"]], color=line.get_color(), alpha=0.2)
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
    unit = first.get("unit", "adaptation_steps").replace("_", " ")
    ax.set_xlabel(unit)
    ax.set_ylabel(first.get("measure", "return"))
    ax.set_title(title or f"{first['tasks']}: {first['num_tasks']} held-out tasks, "
                          f"{first.get('seeds', 1)} seed(s)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
