"""The ``adaptrl`` command: a thin layer over the library.

Every user mistake (unknown names, malformed files, bad values) prints one line
``error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from adaptrl.errors import UserError

console = Console(stderr=True)
out = Console()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other user error
        raise UserError(message)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=console, transient=False,
                    disable=not console.is_terminal)  # no bar in logs: errors stay one line


def _headline(row: dict[str, float]) -> str:
    keys = [k for k in row if k.startswith(("return_step", "success_step", "query_mse",
                                             "trial_return"))]
    return "  ".join(f"{k}={row[k]:.3f}" for k in keys[-3:])


def train_run(run_dir: Path, *, resume: bool, label: str) -> None:
    """Train with a progress bar; shared by ``train`` and ``demo``."""
    from adaptrl import runs

    config = runs.load_run(run_dir)
    with _progress() as progress:
        task = progress.add_task(label, total=config.run.iterations, info="compiling…")

        def report(done: int, total: int, row: dict[str, float]) -> None:
            progress.update(task, completed=done, info=_headline(row))

        done = runs.list_checkpoints(run_dir) if resume else []
        progress.update(task, completed=done[-1] if done else 0)
        try:
            runs.train(run_dir, resume=resume, on_iteration=report)
        except UserError:
            progress.live.transient = True  # erase the bar: the error is the only line
            raise


def _listing(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, style="bold" if i == 0 else None)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def cmd_tasks(args) -> None:
    from adaptrl.tasks import REGISTRY

    _listing("task families", ("name", "kind", "description"),
             [(n, e.factory.kind, e.description) for n, e in sorted(REGISTRY.items())])


def cmd_algos(args) -> None:
    from adaptrl.algos import REGISTRY

    _listing("algorithms", ("name", "families", "description"),
             [(n, ", ".join(e.cls.kinds), e.description) for n, e in sorted(REGISTRY.items())])


def cmd_train(args) -> None:
    from adaptrl import config as cfg
    from adaptrl import runs

    if args.resume:
        if args.algo or args.tasks or args.config or args.set or args.out or args.seed is not None:
            raise UserError("--resume takes the run's saved config; give no algorithm or "
                            "options (only --iterations, to train it longer)")
        run_dir = Path(args.resume)
        c = (runs.extend_run(run_dir, args.iterations) if args.iterations
             else runs.load_run(run_dir))
        train_run(run_dir, resume=True, label=f"{c.algo} on {c.tasks} (resumed)")
        console.print(f"run directory: {run_dir}")
        return
    if not args.algo or not args.tasks:
        raise UserError("train needs ALGO and --tasks FAMILY (or --resume DIR)")
    file_data = None
    if args.config:
        path = Path(args.config)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: cannot read config ({type(e).__name__})") from None
        file_data = cfg.load_yaml(text, source=str(path))
    config = runs.resolve(args.algo, args.tasks, file_data=file_data, sets=args.set,
                          overrides={"iterations": args.iterations, "seed": args.seed})
    if config.sampler.ray:  # before anything is written or said
        from adaptrl.sampling.ray_workers import check_reachable

        check_reachable(config.sampler.ray)
    _state_defaults(config)
    run_dir = Path(args.out) if args.out else Path("runs") / (
        f"{args.algo}-{args.tasks}-seed{config.run.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    runs.create_run(run_dir, config)
    train_run(run_dir, resume=False, label=f"{args.algo} on {args.tasks}")
    console.print(f"run directory: {run_dir}")


def _state_defaults(config) -> None:
    """Say so when a family has no paper setting for the algorithm: its defaults apply."""
    from adaptrl import config as cfg
    from adaptrl.algos import algorithm_entry

    cls = algorithm_entry(config.algo).cls
    if config.tasks in cls.paper_defaults:
        return
    options = ", ".join(f"{k}={v}" for k, v in cfg.to_dict(config.algo_options).items())
    console.print(f"{config.tasks}: no paper setting for {config.algo}; defaults apply: "
                  f"iterations={config.run.iterations}, {options}", soft_wrap=True)


def cmd_check(args) -> int:
    from adaptrl import config as cfg
    from adaptrl.tasks import make_family
    from adaptrl.tasks.check import check_family

    options = {}
    for item in args.set:
        path, value = cfg.parse_set(item)
        if len(path) != 2 or path[0] != "tasks":
            raise UserError(f"check takes only --set tasks.KEY=VALUE, got {cfg.short(item)}")
        options[path[1]] = value
    family = make_family(args.family, options)
    problems = check_family(family)
    if problems:
        for problem in problems:
            out.print(f"FAIL {args.family}: {problem}", soft_wrap=True, markup=False)
        return 1
    out.print(f"ok {args.family}: {type(family).__name__} passes every check", markup=False)
    return 0


def _curve_table(result: dict) -> Table:
    unit = result.get("unit", "adaptation_steps").replace("_", " ")
    caption = None
    if "trial_total" in result:
        t = result["trial_total"]
        caption = (f"total per trial: mean {t['mean']:.3f}, IQM {t['iqm']:.3f} "
                   f"[{t['ci_low']:.3f}, {t['ci_high']:.3f}]")
    table = Table(title=f"{result['algo']} on {result['tasks']}: {result['num_tasks']} "
                        f"{result['split']} tasks x {result.get('seeds', 1)} seed(s)",
                  caption=caption)
    table.add_column(f"{unit} seen" if unit == "episodes" else unit, justify="right")
    for col in ("mean", "IQM", "95% CI of IQM"):
        table.add_column(col, justify="right")
    has_success = "success" in result["curve"][0]
    if has_success:
        table.add_column("success", justify="right")
    if "optimum" in result:
        table.add_column("optimum", justify="right")
    for p in result["curve"]:
        row = [str(p["adaptation_steps"]), f"{p['mean']:.3f}", f"{p['iqm']:.3f}",
               f"[{p['ci_low']:.3f}, {p['ci_high']:.3f}]"]
        if has_success:
            row.append(f"{p['success']:.2f}")
        if "optimum" in result:
            row.append(f"{result['optimum']:.3f}")
        table.add_row(*row)
    return table


def cmd_eval(args) -> None:
    from adaptrl import runs
    from adaptrl.evaluation.harness import evaluate_reference, evaluate_runs, jsonable
    from adaptrl.evaluation.plots import plot_curves
    from adaptrl.tasks import make_family

    results = []
    if args.dirs:
        if args.tasks or args.set:
            raise UserError("--tasks and --set describe the family only when no run is given")
        results.append(evaluate_runs([Path(d) for d in args.dirs], split=args.split,
                                     num_tasks=args.num_tasks, steps=args.adapt_steps,
                                     seed=args.seed))
        first = runs.load_run(Path(args.dirs[0]))
        family, family_name = first.task_options, first.tasks
        steps = results[0]["curve"][-1]["adaptation_steps"]
    elif args.reference and args.tasks:
        from adaptrl import config as cfg

        options = {}
        for item in args.set:
            path, value = cfg.parse_set(item)
            if len(path) != 2 or path[0] != "tasks":
                raise UserError(f"without a run, --set takes only tasks.KEY=VALUE, got {item!r}")
            options[path[1]] = value
        family, family_name = make_family(args.tasks, options), args.tasks
        steps = 9 if args.adapt_steps is None else args.adapt_steps
    else:
        raise UserError("eval needs run directories, or --reference NAME with --tasks FAMILY")
    for name in args.reference:
        results.append(evaluate_reference(name, family, family_name, steps=steps,
                                          split=args.split, num_tasks=args.num_tasks,
                                          seed=args.seed))
    if args.plot:
        plot_curves(results, Path(args.plot))
    if args.json:
        main_result = dict(results[0])
        if len(results) > 1:
            main_result["references"] = results[1:]
        print(json.dumps(jsonable(main_result), allow_nan=False))
        return
    for result in results:
        out.print(_curve_table(result))
    if args.plot:
        console.print(f"plot: {args.plot}")


def cmd_demo(args) -> None:
    from adaptrl import runs
    from adaptrl.evaluation import evaluate_runs, gap_closed
    from adaptrl.evaluation.plots import plot_curves

    run_dir = Path(args.out)
    if (run_dir / runs.CONFIG_FILE).exists():
        resume = True
    else:
        config = runs.resolve("maml-trpo", "point-nav",
                              overrides={"iterations": args.iterations, "seed": args.seed})
        runs.create_run(run_dir, config)
        resume = False
    console.print("[bold]adaptrl demo[/]: meta-train MAML-TRPO on 2D point navigation, then "
                  "adapt to held-out goals with one policy-gradient step.")
    train_run(run_dir, resume=resume, label="meta-training maml-trpo on point-nav")
    result = evaluate_runs([run_dir], split="test", num_tasks=40, steps=3)
    out.print(_curve_table(result))
    one, three = gap_closed(result, 1), gap_closed(result, 3)
    if one is not None and three is not None:
        out.print(f"adaptation closes {100 * one:.0f}% of the gap between the "
                  f"pre-adaptation return and the exact optimum after one step, "
                  f"{100 * three:.0f}% after three")
    png = plot_curves([result], run_dir / "adaptation_curve.png")
    out.print(f"plot: {png}\nrun directory: {run_dir}")


#: commands that compile and run JAX programs (they use the persistent compilation cache)
COMPUTING = ("train", "eval", "demo", "check")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="adaptrl", description="Deep reinforcement meta-learning in JAX.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("tasks", help="list task families").set_defaults(fn=cmd_tasks)
    sub.add_parser("algos", help="list algorithms").set_defaults(fn=cmd_algos)

    t = sub.add_parser("train", help="meta-train an algorithm on a task family")
    t.add_argument("algo", nargs="?", help="algorithm, e.g. maml-trpo (see `adaptrl algos`)")
    t.add_argument("--tasks", help="task family (see `adaptrl tasks`), or your own as "
                                   "MODULE:CLASS, e.g. mypkg.envs:MyFamily")
    t.add_argument("--config", help="YAML file of options (keys: run options, algo:, tasks:)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option: iterations=5, algo.inner_lr=0.1, tasks.arms=10")
    t.add_argument("--iterations", type=int, help="number of meta-iterations")
    t.add_argument("--seed", type=int, help="random seed")
    t.add_argument("--out", help="run directory (default runs/ALGO-FAMILY-seedN-TIME)")
    t.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its checkpoint (with --iterations N: "
                        "train it to N meta-iterations)")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="meta-test trained runs on held-out tasks")
    e.add_argument("dirs", nargs="*", metavar="DIR", help="run directories (one per seed)")
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--num-tasks", type=int, default=40)
    e.add_argument("--adapt-steps", type=int, help="adaptation steps (or episodes) K")
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation rollouts")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--plot", metavar="PNG", help="also write the curve as a PNG plot")
    e.add_argument("--reference", action="append", default=[], metavar="NAME",
                   help="also score a reference strategy on the same tasks "
                        "(random, ucb1, thompson, gittins, psrl, greedy, myopic)")
    e.add_argument("--tasks", help="family for --reference when no run is given")
    e.add_argument("--set", action="append", default=[], metavar="tasks.KEY=VALUE",
                   help="family option for --reference when no run is given")
    e.set_defaults(fn=cmd_eval)

    c = sub.add_parser("check", help="check a task family (yours too: MODULE:CLASS)")
    c.add_argument("family", help="family name, or MODULE:CLASS")
    c.add_argument("--set", action="append", default=[], metavar="tasks.KEY=VALUE",
                   help="family option")
    c.set_defaults(fn=cmd_check)

    d = sub.add_parser("demo", help="meta-train MAML on point-nav and show adaptation")
    d.add_argument("--out", default="runs/demo", help="run directory")
    d.add_argument("--iterations", type=int, default=40,
                   help="meta-iterations (the paper's setting otherwise; it ran 100)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command in COMPUTING:
            from adaptrl import compilation_cache

            compilation_cache.enable()
        status = args.fn(args)
    except UserError as e:
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave cannot be read or written
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
