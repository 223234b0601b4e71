"""The advisor's commands: ``store rebuild``, ``compare``, ``advise`` and ``sweep``.

:func:`add_commands` adds them to the ``adaptrl`` parser; the handlers call the library
(:mod:`~adaptrl.advisor.store`, :mod:`~adaptrl.advisor.compare`,
:mod:`~adaptrl.advisor.surrogate`, :mod:`~adaptrl.advisor.sweep`). Importing this module
imports no JAX (``adaptrl tasks`` stays fast).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from adaptrl.errors import UserError


def _consoles():
    from rich.console import Console

    return Console(), Console(stderr=True)


def _store_path(args) -> Path:
    from adaptrl.advisor.store import STORE_ENV, default_path

    if args.store:
        os.environ[STORE_ENV] = str(args.store)  # the hooks record there too
        return Path(args.store)
    path = default_path()
    if path is None:
        raise UserError(f"{STORE_ENV}=off: give --store PATH")
    return path


# ---- store ------------------------------------------------------------------------------
def cmd_store(args) -> None:
    from adaptrl.advisor.store import rebuild

    path = _store_path(args)
    counts = rebuild(path, [Path(d) for d in args.dirs])
    print(f"{path}: {counts['runs']} runs, {counts['evals']} meta-tests, "
          f"{counts['families']} family feature records")


# ---- compare ----------------------------------------------------------------------------
def cmd_compare(args) -> None:
    from rich.table import Table

    from adaptrl.advisor.compare import compare, plot_comparison
    from adaptrl.evaluation.harness import jsonable

    refs = [] if args.no_reference else (args.reference or None)
    report = compare([Path(d) for d in args.dirs], references=refs, num_tasks=args.num_tasks,
                     steps=args.adapt_steps, seed=args.seed)
    if args.plot:
        plot_comparison(report, Path(args.plot))
    if args.json:
        print(json.dumps(jsonable(report), allow_nan=False))
        return
    out, err = _consoles()
    first = report["strategies"][0]
    t = Table(title=f"{report['tasks']}: final adaptation score on {first['num_tasks']} "
                    f"held-out tasks ({first['measure']})",
              caption="95% CI: stratified bootstrap of the IQM over tasks within seeds",
              caption_justify="left")
    for col in ("strategy", "seeds", "after", "mean", "IQM", "95% CI of IQM"):
        t.add_column(col, justify="left" if col == "strategy" else "right")
    for r in report["strategies"]:
        p = r["curve"][-1]
        t.add_row(r["label"], str(r["seeds"]), f"{p['seen']} {r['unit'].replace('_', ' ')}",
                  f"{p['mean']:.3f}", f"{p['iqm']:.3f}", f"[{p['ci_low']:.3f}, {p['ci_high']:.3f}]")
    out.print(t)
    labels = [r["label"] for r in report["strategies"]]
    m = Table(title="probability of improvement P(row > column) of the final score on a task",
              caption="[95% bootstrap CI]; > 0.5: the row tends to score higher"
              if first.get("measure") != "mse" else "[95% CI]; on MSE, higher means lower error",
              caption_justify="left")
    m.add_column("")
    for lab in labels:
        m.add_column(lab, justify="right", overflow="fold")
    cell = {(i["x"], i["y"]): i for i in report["improvement"]}
    for a in labels:
        m.add_row(a, *("-" if a == b else f"{cell[a, b]['p']:.2f} [{cell[a, b]['ci_low']:.2f}, "
                       f"{cell[a, b]['ci_high']:.2f}]" for b in labels))
    out.print(m)
    if args.plot:
        err.print(f"plot: {args.plot}", markup=False, soft_wrap=True)


# ---- advise -----------------------------------------------------------------------------
def cmd_advise(args) -> None:
    from adaptrl import config as cfg
    from adaptrl.advisor.advise import advise

    out, err = _consoles()
    path = _store_path(args)
    report = advise(args.tasks, cfg.task_sets(args.set, command="advise"), path=path,
                    candidates=Path(args.candidates) if args.candidates else None,
                    budget=args.budget, out_dir=Path(args.out) if args.out else None,
                    log=(lambda msg: err.print(msg, markup=False)) if not args.json else None)
    if args.json:
        print(json.dumps(report, allow_nan=False))
        return
    from adaptrl.advisor.advise import tables

    for table in tables(report):
        out.print(table)


# ---- sweep ------------------------------------------------------------------------------
def cmd_sweep(args) -> None:
    from rich.table import Table

    from adaptrl import config as cfg
    from adaptrl.advisor.sweep import load_grid, sweep

    out, err = _consoles()
    _store_path(args)
    strategies, ev = load_grid(Path(args.grid))
    root = Path(args.out) if args.out else Path("runs") / f"sweep-{args.tasks}"

    def report(r: dict[str, Any]) -> None:
        how = "read back" if r.get("resumed") else "done"
        err.print(f"trial {r['strategy']} seed {r['seed']}: score {r['score']:.3f} ({how})",
                  markup=False)

    results = sweep(args.tasks, strategies, seeds=args.seeds, root=root, evaluation=ev,
                    task_sets=cfg.task_sets(args.set, command="sweep"), ray_address=args.ray,
                    workers=args.workers, on_trial=report)
    if args.json:
        print(json.dumps(results, allow_nan=False))
        return
    t = Table(title=f"sweep on {args.tasks}: {len(strategies)} strategies x {args.seeds} "
                    f"seed(s) -> {root}")
    for col in ("strategy", "seed", "score", "run directory"):
        t.add_column(col, justify="right" if col in ("seed", "score") else "left")
    for r in results:
        t.add_row(r["strategy"], str(r["seed"]), f"{r['score']:.3f}", r["run_dir"])
    out.print(t)


def add_commands(sub) -> None:
    """Add ``store``, ``compare``, ``advise`` and ``sweep`` to the ``adaptrl`` subparsers."""
    store_help = "results store file (default $ADAPTRL_STORE or ~/.local/share/adaptrl/results.sqlite)"

    s = sub.add_parser("store", help="the results store: rebuild it from run directories")
    ss = s.add_subparsers(dest="store_command", metavar="ACTION", required=True,
                          parser_class=type(s))
    r = ss.add_parser("rebuild", help="rebuild the store from run directories (recursively)")
    r.add_argument("dirs", nargs="+", metavar="DIR")
    r.add_argument("--store", help=store_help)
    r.set_defaults(fn=cmd_store)

    c = sub.add_parser("compare", help="compare runs of several strategies on held-out tasks")
    c.add_argument("dirs", nargs="+", metavar="RUN", help="run directories (seeds of one "
                   "strategy are pooled)")
    c.add_argument("--plot", metavar="FILE.png", help="write the curves as a PNG")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--reference", action="append", default=[], metavar="NAME",
                   help="reference strategy to show beside (default: random, and gittins on "
                        "bandits or psrl on tabular MDPs)")
    c.add_argument("--no-reference", action="store_true", help="no reference strategies")
    c.add_argument("--num-tasks", type=int, default=40)
    c.add_argument("--adapt-steps", type=int, metavar="K")
    c.add_argument("--seed", type=int, default=0, help="seed of the evaluation rollouts")
    c.set_defaults(fn=cmd_compare)

    a = sub.add_parser("advise", help="predict each candidate strategy's score on a family "
                                      "and rank them (with --budget: Bayesian optimisation)")
    a.add_argument("--tasks", required=True, help="task family")
    a.add_argument("--set", action="append", default=[], metavar="tasks.KEY=VALUE",
                   help="family option")
    a.add_argument("--candidates", metavar="FILE.yaml",
                   help="candidate strategies (default: the shipped tiny MAML candidates)")
    a.add_argument("--budget", type=int, default=0, metavar="N",
                   help="then train N candidates chosen by expected improvement")
    a.add_argument("--out", help="directory of the --budget runs (default runs/advise-FAMILY)")
    a.add_argument("--store", help=store_help)
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(fn=cmd_advise)

    w = sub.add_parser("sweep", help="train and meta-test a grid of strategies x seeds")
    w.add_argument("--tasks", required=True, help="task family")
    w.add_argument("--grid", required=True, metavar="FILE.yaml", help="the grid")
    w.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 0..N-1")
    w.add_argument("--ray", metavar="ADDRESS", help="run the trials on this Ray cluster")
    w.add_argument("--workers", type=int, help="local processes (default: the cores)")
    w.add_argument("--set", action="append", default=[], metavar="tasks.KEY=VALUE",
                   help="family option")
    w.add_argument("--out", help="sweep directory (default runs/sweep-FAMILY)")
    w.add_argument("--store", help=store_help)
    w.add_argument("--json", action="store_true", help="print the trials as JSON")
    w.set_defaults(fn=cmd_sweep)
