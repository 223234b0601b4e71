"""Shared pieces of the RL² benchmarks: train, evaluate, summarise, write markdown."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import flax.serialization
import jax
import numpy as np
from common import machine  # noqa: F401  (re-exported for the RL² scripts)

from adaptrl import config as cfg
from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.errors import UserError
from adaptrl.evaluation.plots import plot_curves
from adaptrl.evaluation.reference import reference_curve
from adaptrl.ops.stats import summarize
from adaptrl.runs import atomic_write


def command() -> str:
    """The command that regenerates the results. ``--reuse`` is left out: it only evaluates
    again the states that run kept, and training is deterministic per seed."""
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv] if a != "--reuse")


SAVED = Path("runs/benchmarks")


def add_common_args(p: argparse.ArgumentParser, out: str) -> None:
    """The options every RL² benchmark takes; ``out`` is the default results file, ``{}``
    in it standing where ``_transformer`` goes for the transformer policy."""
    p.add_argument("--architecture", choices=["gru", "transformer"], default="gru",
                   help="RL²'s policy network; each has its own settings and results file")
    p.add_argument("--seeds", type=int, default=1, help="meta-training seeds")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds first-seed .. first-seed + seeds - 1 (to train seeds in parallel "
                        "processes, then gather them with --reuse)")
    p.add_argument("--test-tasks", type=int, default=1000)
    p.add_argument("--iterations", type=int, default=None, help="override the settings' length")
    p.add_argument("--out", default=out)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--reuse", action="store_true",
                   help="evaluate the states kept in runs/benchmarks/ by an earlier run of the "
                        "same settings instead of training again")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override an RL2Config field of the settings, e.g. gae_lambda=0.99; "
                        "the kept states are then named after the overrides that change "
                        "training (so --set eval_greedy=true --reuse evaluates the kept "
                        "states with the most likely actions)")


def parse(p: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; ``args.suffix`` is ``"_transformer"`` for the transformer
    policy (in the results file's name and the kept states' names), else ``""``;
    ``args.overrides`` holds the ``--set`` fields (values parsed as YAML) and ``args.tag``
    names those that change training for the kept states (``""`` without any);
    ``args.seed_list`` holds the meta-training seeds."""
    args = p.parse_args()
    args.suffix = "_transformer" if args.architecture == "transformer" else ""
    args.seed_list = list(range(args.first_seed, args.first_seed + args.seeds))
    args.out = args.out.format(args.suffix)
    args.overrides = {}
    for item in args.set:
        try:
            path, value = cfg.parse_set(item)  # the CLI's --set parser
        except UserError as e:
            p.error(str(e))
        if len(path) != 1:
            p.error(f"--set takes an RL2Config FIELD=VALUE, got {item!r}")
        args.overrides[path[0]] = value
    args.tag = "".join(f"_{f}={v}" for f, v in args.overrides.items()
                       if f not in RL2Config.EVAL_ONLY)
    return args


def run_length(settings: dict, iterations: int | None) -> tuple[int, dict]:
    """(iterations, RL2Config options) of ``settings``, optionally made ``iterations`` long;
    a step-size schedule is stretched to the run actually made."""
    opts = dict(settings)
    iters = iterations or opts["iterations"]
    del opts["iterations"]
    if opts.get("lr_anneal_iterations") and iterations:
        opts["lr_anneal_iterations"] = iters
    return iters, opts


def _same_run(kept: dict, meta: dict, config: RL2Config) -> bool:
    """Whether a kept state's sidecar describes the run ``meta``. Configs are compared as
    values, so a field added to RL2Config since (with its default) still matches, and
    evaluation-only fields (``RL2Config.EVAL_ONLY``) are not compared."""
    if (kept.get("family"), kept.get("iterations")) != (meta["family"], meta["iterations"]):
        return False
    try:
        trained = RL2Config(**kept["fields"])
    except (KeyError, TypeError, ValueError):  # no fields kept, or one since removed
        return False
    return dataclasses.replace(
        trained, **{f: getattr(config, f) for f in RL2Config.EVAL_ONLY}) == config


def train_rl2(family, config: RL2Config, iterations: int, *, seed: int, name: str,
              reuse: bool = False, log_every: int = 50):
    """Train RL² and return (algo, state, seconds excluding compilation, compile seconds).

    The trained state is kept in ``runs/benchmarks/{name}_seed{seed}.msgpack``, its config
    and timings beside it in ``.json``. With ``reuse``, a kept state of the same config and
    length is loaded instead of training again (to redo the evaluation and the write-up)."""
    algo = RL2(config, family)
    state = algo.init(key=jax.random.PRNGKey(seed))
    stem = SAVED / f"{name}_seed{seed}"  # the name may hold dots (--set values)
    sidecar, saved = Path(f"{stem}.json"), Path(f"{stem}.msgpack")
    meta = {"config": repr(config), "family": repr(family), "iterations": iterations,
            "fields": dataclasses.asdict(config)}
    if reuse and sidecar.exists():
        kept = json.loads(sidecar.read_text())
        if _same_run(kept, meta, config):
            state = flax.serialization.from_bytes(state, saved.read_bytes())
            print(f"  seed {seed}: reusing {saved}", flush=True)
            return algo, state, kept["seconds"], kept["compile_seconds"]
        print(f"  seed {seed}: {sidecar} holds another run; training", flush=True)
    update = jax.jit(algo.update)
    t0 = time.perf_counter()
    state, metrics = update(state)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for it in range(1, iterations):
        state, metrics = update(state)
        if it % log_every == 0:
            print(f"  seed {seed} it {it}: trial return {float(metrics['trial_return']):.2f}"
                  f" ({time.perf_counter() - t0:.0f}s)", flush=True)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    SAVED.mkdir(parents=True, exist_ok=True)
    atomic_write(saved, flax.serialization.to_bytes(state))
    atomic_write(sidecar, json.dumps(
        {**meta, "seconds": seconds, "compile_seconds": compile_s}, indent=1).encode())
    return algo, state, seconds, compile_s


def rl2_returns(algo, state, tasks, episodes: int, *, seed: int) -> np.ndarray:
    """Return of each episode of one trial per task, ``[num_tasks, episodes]``, in chunks to
    bound memory; ``.sum(-1)`` is the total reward per trial."""
    curve = jax.jit(lambda s, t, k: algo.adaptation_curve(s, t, key=k, steps=episodes - 1))
    n = jax.tree.leaves(tasks)[0].shape[0]
    out = []
    for i in range(0, n, 500):
        chunk = jax.tree.map(lambda x, i=i: x[i:i + 500], tasks)
        key = jax.random.fold_in(jax.random.PRNGKey(10_000 + seed), i)
        out.append(np.asarray(curve(state, chunk, key)["return"]))
    return np.concatenate(out)


def reference_returns(name, family, tasks, episodes: int, *, seed: int,
                      family_name: str) -> np.ndarray:
    """As :func:`rl2_returns`, for reference strategy ``name`` (``family`` is the
    registered family ``family_name``)."""
    key = jax.random.PRNGKey(20_000 + seed)
    return np.asarray(reference_curve(name, family, tasks, key=key, episodes=episodes,
                                      family_name=family_name)["return"])


def curve_lines(strategies: dict[str, list[np.ndarray]], png: Path, *, title: str,
                unit: str, optimum: float | None = None) -> list[str]:
    """The adaptation curve within a trial: a PNG at ``png`` of each strategy's mean return
    per episode with its 95% confidence band, and markdown lines with a table of those means
    (every episode up to 10, else ten evenly spaced ones), tasks and seeds pooled.
    ``strategies`` maps a name to one ``[num_tasks, episodes]`` array per seed. As in
    ``adaptrl eval``, each point is labelled with the episodes (``unit``) of the trial seen
    before it: 0 for the first."""
    pooled = {name: np.concatenate(per) for name, per in strategies.items()}
    results = []
    for name, r in pooled.items():
        mean = r.mean(0)
        half = 1.96 * r.std(0, ddof=1) / np.sqrt(r.shape[0])
        curve = [{"seen": e, "mean": m, "ci_low": m - h, "ci_high": m + h}
                 for e, (m, h) in enumerate(zip(mean, half, strict=True))]
        res = {"algo": name, "tasks": title, "unit": unit, "measure": "return", "curve": curve,
               "axis": f"{unit} of the trial seen before the scored one"}
        if optimum is not None:
            res["optimum"] = optimum
        results.append(res)
    plot_curves(results, png, title=title, center="mean")
    n = next(iter(pooled.values())).shape[1]
    shown = list(range(1, n + 1)) if n <= 10 else [1, *range(n // 10, n + 1, n // 10)]
    step = unit.rstrip("s")
    lines = [f"| {unit} seen before | " + " | ".join(pooled) + " |",
             "|---" * (len(pooled) + 1) + "|"]
    for e in shown:
        lines.append(f"| {e - 1} | " + " | ".join(f"{r[:, e - 1].mean():.3f}"
                                                   for r in pooled.values()) + " |")
    return [f"Mean return per {step} of the trial, tasks and seeds pooled (plot: "
            f"`{png.name}`, the mean with its 95% confidence band):", "", *lines, "",
            f"![adaptation curve]({png.name})"]


def row(name: str, per_seed: list[np.ndarray], paper: str = "") -> tuple[str, dict]:
    s = summarize(per_seed)
    pooled = np.concatenate(per_seed)
    half = 1.96 * pooled.std(ddof=1) / np.sqrt(pooled.size)
    text = (f"| {name} | {s['mean']:.2f} ± {half:.2f} | {s['iqm']:.2f} "
            f"[{s['ci_low']:.2f}, {s['ci_high']:.2f}] | {s['n']} | {paper} |")
    return text, s


def seed_lines(seeds: list[int], rl2: list[np.ndarray], times: list[tuple[float, float]]
               ) -> list[str]:
    """The results files' per-seed lines: RL²'s mean and the meta-training wall time."""
    means = ", ".join(f"{t.mean():.2f} (seed {s})" for s, t in zip(seeds, rl2, strict=True))
    walls = ", ".join(f"{s:.0f} s (+{c:.0f} s compile)" for s, c in times)
    return [f"RL² mean per seed: {means}.",
            f"Meta-training wall time per seed (excluding compilation): {walls}."]


# what ``--architecture transformer`` trains, for the results files' notes
TRANSFORMER_POLICY = (
    "The policy is `RL2Config(architecture=\"transformer\")`: a causal transformer (2 "
    "pre-LayerNorm blocks of 4-head self-attention and a ReLU MLP, width 64, learned position "
    "embeddings) over the trial's inputs so far, one trunk for the action and value heads. "
    "Its memory is the attention cache of the trial's steps, reset between trials as the "
    "GRU's state is; while acting it takes one step at a time against that cache, and the "
    "PPO update evaluates each recorded trial in one parallel pass (tested to give the same "
    "outputs).")

HEADER = ("| strategy | mean ± 95% CI (normal) | IQM [95% stratified-bootstrap CI] | "
          "trials | Duan et al. |\n|---|---|---|---|---|")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
