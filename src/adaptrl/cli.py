"""The ``adaptrl`` command: a thin layer over the library.

Every user mistake (unknown names, malformed files, bad values) prints one line
``error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adaptrl.errors import UserError
from adaptrl.progress import Stopped, console, train_run

out = Console()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other user error
        raise UserError(message)


def listing_table(title: str, columns: tuple[str, ...],
                  rows: Sequence[tuple[str, ...]]) -> Table:
    """A name/kind/description table; a description too long for the terminal ends in an
    ellipsis rather than wrapping."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        last = i == len(columns) - 1
        widest = max([len(col), *(len(row[i]) for row in rows)])
        table.add_column(col, style="bold" if i == 0 else None, no_wrap=True,
                         overflow="ellipsis" if last else "fold",
                         min_width=None if last else widest)  # names are never cut
    for row in rows:
        table.add_row(*row)
    return table


def family_rows() -> list[tuple[str, str, str]]:
    """The rows of ``adaptrl tasks``: every registered family, the 50 Meta-World ML1
    families as one row ``ml1-<task>`` (their task types are listed under the table)."""
    from adaptrl.tasks import REGISTRY  # names, kinds and descriptions only: no JAX
    from adaptrl.tasks.base import ML1_TASKS

    ml1 = {f"ml1-{t}" for t in ML1_TASKS}
    rows = [(n, e.kind, e.description) for n, e in sorted(REGISTRY.items()) if n not in ml1]
    first = REGISTRY.get(f"ml1-{ML1_TASKS[0]}")
    if first is not None:
        rows.append(("ml1-<task>", first.kind, first.description))
    return sorted(rows)


def cmd_tasks(args) -> None:
    from adaptrl.tasks.base import ML1_TASKS

    out.print(listing_table("task families", ("name", "kind", "description"), family_rows()))
    out.print(f"ml1-<task>: <task> is one of {', '.join(sorted(ML1_TASKS))}")


def cmd_algos(args) -> None:
    from adaptrl.algos import REGISTRY  # names, kinds and descriptions only: no JAX

    out.print(listing_table("algorithms", ("name", "families", "description"),
                            [(n, ", ".join(e.kinds), e.description)
                             for n, e in sorted(REGISTRY.items())]))


def cmd_train(args) -> None:
    from adaptrl import config as cfg
    from adaptrl import runs

    if args.resume:
        if args.algo or args.tasks or args.config or args.set or args.out or args.seed is not None:
            raise UserError("--resume takes the run's saved config; give no algorithm or "
                            "options (only --iterations, to train it longer)")
        run_dir = Path(args.resume)
        c = runs.load_run(run_dir)
        if args.iterations is not None:
            c = runs.extended(run_dir, c, args.iterations)  # validated; written on resume
        done = runs.list_checkpoints(run_dir)
        if done and done[-1] >= c.run.iterations:  # nothing to train: say so, compile nothing
            anneal = getattr(c.algo_options, runs.ANNEAL, 0)
            further = (f"its step size reached 0 at iteration {anneal}, so start a new run "
                       "with a larger --iterations to train longer" if anneal and
                       anneal <= done[-1] else
                       f"to train it further: adaptrl train --resume "
                       f"{shlex.quote(str(run_dir))} --iterations M (M > {done[-1]})")
            print(f"{run_dir} is complete at iteration {done[-1]}; {further}", file=sys.stderr)
            return
        train_run(run_dir, resume=True, label=f"{c.algo} on {c.tasks} (resumed)",
                  iterations=args.iterations)
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
    new = runs.create_run(run_dir, config)
    try:
        train_run(run_dir, resume=False, label=f"{args.algo} on {args.tasks}")
    except Exception as e:  # failed before its first checkpoint: leave nothing to block a retry
        if not isinstance(e, Stopped):
            runs.discard_new_run(new)
        raise
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

    family = make_family(args.family, cfg.task_sets(args.set, command="check"))
    problems = check_family(family)
    if problems:
        for problem in problems:
            out.print(f"FAIL {args.family}: {problem}", soft_wrap=True, markup=False)
        return 1
    out.print(f"ok {args.family}: {type(family).__name__} passes every check", markup=False)
    return 0


#: the column header of a curve's x axis, by unit (the caption says it in full)
_AXIS_HEADERS = {"gradient_steps": "gradient steps", "episodes": "episodes seen"}


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def curve_caption(result: dict) -> list[str]:
    """The lines under a curve table: what the x axis counts, the optimum, the total per
    trial, the checkpoint iteration scored for each run, and meta-test changes."""
    lines = [f"x: {result['axis']}"] if "axis" in result else []
    if "optimum" in result:
        lines.append(f"exact optimum: {result['optimum']:.3f}")
    if "trial_total" in result:
        t = result["trial_total"]
        lines.append(f"total per trial: mean {t['mean']:.3f}, IQM {t['iqm']:.3f} "
                     f"[{t['ci_low']:.3f}, {t['ci_high']:.3f}]")
    ckpts = result.get("checkpoints") or []
    its = [c["iteration"] for c in ckpts]
    if len(set(its)) == 1:
        each = f" (each of the {len(its)} runs)" if len(its) > 1 else ""
        lines.append(f"scored checkpoint: iteration {its[0]}{each}")
    elif its:
        line = "scored checkpoints, iteration per run: " + ", ".join(map(str, its))
        lines.append(line if len(line) <= 78 else f"scored checkpoints: iterations "
                     f"{min(its)} to {max(its)} over {len(its)} runs (per run in --json)")
    if result.get("task_changes"):
        what = "meta-test family changed from training" if ckpts else "family options"
        lines.append(f"{what}: " + ", ".join(f"tasks.{k}={_short(v)}"
                                             for k, v in result["task_changes"].items()))
    return lines


def _curve_table(result: dict) -> Table:
    """An adaptation curve as a table that fits an 80-column terminal."""
    unit = result.get("unit", "gradient_steps")
    title = (f"{result['algo']} on {result['tasks']}: {result['num_tasks']} "
             f"{result['split']} tasks x {result.get('seeds', 1)} seed(s)")
    caption = curve_caption(result)
    # as wide as its title and caption lines, so that they are not wrapped
    table = Table(title=title, caption="\n".join(caption) or None, caption_justify="left",
                  min_width=max(len(line) for line in [title, *caption]))
    table.add_column(_AXIS_HEADERS.get(unit, unit.replace("_", " ") + " seen"),
                     justify="right")
    for col in ("mean", "IQM", "95% CI of IQM"):
        table.add_column(col, justify="right")
    has_success = "success" in result["curve"][0]
    if has_success:
        table.add_column("success", justify="right")
    for p in result["curve"]:
        row = [str(p["seen"]), f"{p['mean']:.3f}", f"{p['iqm']:.3f}",
               f"[{p['ci_low']:.3f}, {p['ci_high']:.3f}]"]
        if has_success:
            row.append(f"{p['success']:.2f}")
        table.add_row(*row)
    return table


def cmd_eval(args) -> None:
    from adaptrl import config as cfg
    from adaptrl import runs
    from adaptrl.evaluation.harness import evaluate_reference, evaluate_runs, jsonable
    from adaptrl.evaluation.plots import plot_curves
    from adaptrl.tasks import make_family, meta_test_family

    results = []
    changes = cfg.task_sets(args.set, command="eval")
    if args.protocol == "metaworld":
        return _eval_metaworld(args, changes)
    args.num_tasks = 40 if args.num_tasks is None else args.num_tasks
    if args.dirs:
        if args.tasks:
            raise UserError("--tasks names the family only when no run is given")
        results.append(evaluate_runs([Path(d) for d in args.dirs], split=args.split,
                                     num_tasks=args.num_tasks, steps=args.adapt_steps,
                                     seed=args.seed, task_changes=changes))
        first = runs.load_run(Path(args.dirs[0]))
        family, family_name = meta_test_family(first.task_options, changes), first.tasks
        steps = results[0]["curve"][-1]["seen"]
    elif args.reference and args.tasks:
        family, family_name = make_family(args.tasks, changes), args.tasks
        steps = 9 if args.adapt_steps is None else args.adapt_steps
    else:
        raise UserError("eval needs run directories, or --reference NAME with --tasks FAMILY")
    for name in args.reference:
        results.append(evaluate_reference(name, family, family_name, steps=steps,
                                          split=args.split, num_tasks=args.num_tasks,
                                          seed=args.seed, task_changes=changes))
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


def _eval_metaworld(args, changes: dict) -> None:
    """``eval --protocol metaworld``: Meta-World's protocol beside the adaptation curve."""
    from adaptrl.evaluation.harness import jsonable
    from adaptrl.evaluation.metaworld import metaworld_protocol

    if not args.dirs or args.reference or args.tasks:
        raise UserError("--protocol metaworld scores run directories (no --reference/--tasks)")
    if args.split != "test":
        raise UserError("--protocol metaworld scores the held-out (test) tasks")
    result = metaworld_protocol([Path(d) for d in args.dirs], num_tasks=args.num_tasks,
                                adapt=args.adapt_steps, scored=args.scored_episodes,
                                seed=args.seed, task_changes=changes)
    if args.json:
        print(json.dumps(jsonable(result), allow_nan=False))
        return
    mw = result["metaworld"]
    unit = mw["adapt_unit"].replace("_", " ")
    table = Table(title=f"Meta-World protocol: {result['algo']} on {result['tasks']} "
                        f"(metaworld {mw['metaworld_version']}, reward {mw['reward_version']})",
                  caption=f"after {mw['adapt']} {unit}, {mw['scored_episodes']} scored "
                          f"episodes per task; success at any step; overall = mean over "
                          f"types", caption_justify="left")
    for col in ("task type", "tasks", "success", "95% CI", "return"):
        table.add_column(col, justify="left" if col == "task type" else "right")
    for name, row in mw["per_type"].items():
        table.add_row(name, str(row["tasks"]), f"{row['success']:.3f}",
                      f"[{row['success_ci'][0]:.3f}, {row['success_ci'][1]:.3f}]",
                      f"{row['return']:.1f}")
    table.add_row("overall", str(sum(r["tasks"] for r in mw["per_type"].values())),
                  f"{mw['success']:.3f}", f"[{mw['success_ci'][0]:.3f}, "
                  f"{mw['success_ci'][1]:.3f}]", f"{mw['return']:.1f}")
    out.print(table)
    out.print(_curve_table(result))


#: the demo's departures from the paper setting, so that it runs in about 2 minutes on 2
#: cores: 20 tasks per meta-batch (the authors' code calls 20 "fairly stable") and the
#: TRPO Fisher estimated on 5 of them (docs/results/demo.md)
DEMO_SETS = ("algo.meta_batch_size=20", "algo.fisher_tasks=5")


def cmd_demo(args) -> None:
    from adaptrl import runs
    from adaptrl.evaluation import evaluate_runs, gap_closed
    from adaptrl.evaluation.plots import plot_curves

    run_dir = Path(args.out)
    if (run_dir / runs.CONFIG_FILE).exists():
        resume = True
    else:
        config = runs.resolve("maml-trpo", "point-nav", sets=DEMO_SETS,
                              overrides={"iterations": args.iterations, "seed": args.seed})
        runs.create_run(run_dir, config)
        resume = False
    console.print("[bold]adaptrl demo[/]: meta-train MAML-TRPO on 2D point navigation "
                  "(20 tasks per meta-batch; the paper setting, 40 tasks x 100 iterations, is "
                  "benchmarks/maml_point_nav.py), then adapt to 40 held-out goals with 1, 2 "
                  "and 3 policy-gradient steps.")
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
COMPUTING = ("train", "eval", "demo", "check", "store", "compare", "advise", "sweep")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="adaptrl", description="Deep reinforcement meta-learning in JAX.")
    # not required: a bare `adaptrl` prints this usage with the commands (see main)
    sub = p.add_subparsers(dest="command", title="commands", metavar="COMMAND",
                           parser_class=_Parser)

    sub.add_parser("tasks", help="list task families").set_defaults(fn=cmd_tasks)
    sub.add_parser("algos", help="list algorithms").set_defaults(fn=cmd_algos)

    t = sub.add_parser("train", help="meta-train an algorithm on a task family")
    t.add_argument("algo", nargs="?", help="algorithm, e.g. maml-trpo (see `adaptrl algos`)")
    t.add_argument("--tasks", help="task family (see `adaptrl tasks`), or your own as "
                                   "MODULE:CLASS, e.g. mypkg.envs:MyFamily")
    t.add_argument("--config", help="YAML file of options (keys: run options, algo:, tasks:)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option: algo.inner_lr=0.1, tasks.arms=10, or a run "
                        "option without a prefix (iterations=5); an unprefixed key goes to "
                        "the one of run/algo/tasks that has it (inner_lr=0.1 means "
                        "algo.inner_lr) and is refused when more than one has it")
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
    e.add_argument("--num-tasks", type=int,
                   help="held-out tasks (default 40; --protocol metaworld: all of them)")
    e.add_argument("--adapt-steps", type=int, metavar="K",
                   help="the curve's last point: after K gradient steps (MAML) or at "
                        "episode K+1 of the trial, K episodes seen (RL², references)")
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation rollouts")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--plot", metavar="PNG", help="also write the curve as a PNG plot")
    e.add_argument("--reference", action="append", default=[], metavar="NAME",
                   help="also score a reference strategy on the same tasks "
                        "(random, ucb1, thompson, gittins, psrl, greedy, myopic)")
    e.add_argument("--tasks", help="family for --reference when no run is given")
    e.add_argument("--set", action="append", default=[], metavar="tasks.KEY=VALUE",
                   help="with runs: move the task distribution for an out-of-distribution "
                        "meta-test (e.g. tasks.goal_high=0.7; only options that change "
                        "which tasks are drawn; recorded in the output); without a run: "
                        "any option of the --tasks family")
    e.add_argument("--protocol", default="curve", choices=["curve", "metaworld"],
                   help="metaworld: Meta-World's meta-test protocol (adapt, then score "
                        "episodes; success at any step; per task type and overall) beside "
                        "the curve, on every held-out task unless --num-tasks is given")
    e.add_argument("--scored-episodes", type=int, default=3, metavar="N",
                   help="with --protocol metaworld: episodes scored after adaptation "
                        "(RL²; MAML scores its eval_episodes)")
    e.set_defaults(fn=cmd_eval)

    c = sub.add_parser("check", help="check a task family (yours too: MODULE:CLASS)")
    c.add_argument("family", help="family name, or MODULE:CLASS")
    c.add_argument("--set", action="append", default=[], metavar="tasks.KEY=VALUE",
                   help="family option")
    c.set_defaults(fn=cmd_check)

    d = sub.add_parser("demo", help="meta-train MAML on point-nav and show adaptation")
    d.add_argument("--out", default="runs/demo", help="run directory")
    d.add_argument("--iterations", type=int, default=40, help="meta-iterations")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=cmd_demo)

    from adaptrl.advisor.commands import add_commands  # store, compare, advise, sweep

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:  # a bare `adaptrl`: the usage and the list of commands
            parser.print_help(sys.stderr)
            return 2
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
    except Stopped as e:  # SIGINT or SIGTERM during training: 130 or 143, as a shell says
        print(e, file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
