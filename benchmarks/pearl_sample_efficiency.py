"""PEARL on cheetah-vel at the authors' setting, against MAML-TRPO's held-out return, over
several sittings.

PEARL (katerakelly/oyster, configs/cheetah-vel.json): 100 training velocities (a fixed
pool), 2000 initial steps per task, then per iteration 5 tasks x (400 prior + 600
posterior steps), 2000 gradient steps on 16 tasks x 256 transitions, 100 context
transitions, latent 5, networks 300x300x300, reward scale 5; 500 iterations. MAML-TRPO's
return is read from docs/results/maml_cheetah_vel.json (benchmarks/maml_cheetah_vel.py),
scored on the same held-out velocities (the family's test split).

Target (the issue, after the PEARL paper's Fig. 3): PEARL reaches MAML-TRPO's held-out
return after adaptation with at least 20x fewer environment steps.

Each sitting trains the seeds in turns for ``--budget-minutes`` and resumes exactly where
the last one stopped (runs/bench-NAME/pearl-seedS, ledger.json; environment steps are
the runs' own ``env_steps`` metric), then scores every seed's newest checkpoint on
``--eval-tasks`` held-out velocities after 0, 1 and 2 episodes of context and writes
docs/results/NAME.{md,json,png}, marked PARTIAL until each seed reached ``--iterations``.

    MUJOCO_GL=egl python benchmarks/pearl_sample_efficiency.py --seeds 2 --budget-minutes 60
"""

from __future__ import annotations

import argparse
import json
import os

from _long_runs import Ledger, score_and_write, train_in_turns
from common import RESULTS

from adaptrl import runs


def compare_with_maml(name: str, ledger: Ledger) -> list[str]:
    """The comparison section: PEARL's best post-context IQM and steps against MAML-TRPO's
    recorded best post-adaptation IQM and steps."""
    pearl = json.loads((RESULTS / f"{name}.json").read_text())
    maml_path = RESULTS / "maml_cheetah_vel.json"
    if "pearl" not in pearl["results"] or not maml_path.exists():
        return []
    maml = json.loads(maml_path.read_text())
    m_curve = maml["results"]["maml-trpo"]["curve"]
    m_best = max(m_curve[1:], key=lambda p: p["iqm"])
    m_steps = sum(r["env_steps"] for r in maml["ledger"].values()) / len(maml["ledger"])
    m_state = "PARTIAL" if maml["partial"] else "complete"
    curve = pearl["results"]["pearl"]["curve"]
    p_best = max(curve[1:], key=lambda p: p["iqm"])
    p_steps = sum(r["env_steps"] for r in ledger.seeds.values()) / len(ledger.seeds)
    reached = p_best["iqm"] >= m_best["iqm"]
    return [
        "## Against MAML-TRPO", "",
        "| learner | held-out return (IQM, best point after adaptation) | 95% CI | env steps "
        "per seed |", "|---|---|---|---|",
        f"| MAML-TRPO ({m_state}: iteration {min(maml['iterations_done']['maml-trpo'])} of "
        f"{maml['targets']['maml-trpo']}) | {m_best['iqm']:.1f} (after {m_best['seen']} "
        f"gradient steps) | [{m_best['ci_low']:.1f}, {m_best['ci_high']:.1f}] | "
        f"{m_steps:,.0f} |",
        f"| PEARL ({'PARTIAL' if pearl['partial'] else 'complete'}) | {p_best['iqm']:.1f} "
        f"(after {p_best['seen']} episodes of context) | [{p_best['ci_low']:.1f}, "
        f"{p_best['ci_high']:.1f}] | {p_steps:,.0f} |", "",
        f"PEARL {'reaches' if reached else 'does not yet reach'} MAML-TRPO's recorded return"
        + (f", with {m_steps / p_steps:.1f}x fewer environment steps per seed "
           f"(target: >= 20x)." if reached else "."),
        "MAML-TRPO's run is itself PARTIAL (early in its 800 iterations), so this compares "
        "against its return so far, not its final one.", ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--iterations", type=int, default=500, help="the authors' length")
    p.add_argument("--budget-minutes", type=float, default=60.0,
                   help="training time of this sitting (then it evaluates and stops)")
    p.add_argument("--chunk", type=int, default=2, help="iterations per seed per turn")
    p.add_argument("--eval-tasks", type=int, default=30, help="the authors' 30 test tasks")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--set", action="append", default=[],
                   help="extra config overrides (a smoke test: the command line records them)")
    p.add_argument("--name", default="pearl_cheetah_vel", help="results and run directory stem")
    args = p.parse_args()
    sets = [f"sampler.workers={args.workers}", "checkpoint_every=1", "keep_checkpoints=2",
            *args.set]
    configs = [runs.resolve("pearl", "cheetah-vel", sets=sets,
                            overrides={"iterations": args.iterations, "seed": s})
               for s in range(args.seeds)]
    dirs, ledger = train_in_turns(args.name, configs, chunk=args.chunk,
                                  minutes=args.budget_minutes)  # runs/bench-NAME/pearl-seedS
    c, t = configs[0].algo_options, configs[0].task_options
    score_and_write(
        args.name, "PEARL on cheetah-vel", {"pearl": dirs}, targets={"pearl": args.iterations},
        ledger=ledger, eval_tasks=args.eval_tasks, steps={"pearl": 2}, notes=[
            f"setting: the authors' (oyster configs/cheetah-vel.json): {t.train_pool} "
            f"training velocities, {c.initial_episodes} initial episodes per task, then "
            f"{c.tasks_per_iteration} tasks x ({c.prior_episodes} prior + "
            f"{c.posterior_episodes} posterior) episodes of {t.horizon} steps and "
            f"{c.train_steps} gradient steps ({c.meta_batch} tasks x {c.batch_size}, context "
            f"{c.context_batch}) per iteration, latent {c.latent_dim}, networks "
            f"{list(c.hidden)}, reward scale {c.reward_scale}; host sampler, {args.workers} "
            f"worker processes; {args.seeds} seeds",
            "curve: return of episode k on a held-out velocity, z from the prior (k = 0) or "
            "from the posterior given episodes 0..k-1, actions tanh(mean) (posterior "
            "sampling; the authors' evaluation)"])
    lines = compare_with_maml(args.name, ledger)
    if lines:
        md = RESULTS / f"{args.name}.md"
        md.write_text(md.read_text() + "\n" + "\n".join(lines))
        print("\n".join(lines))


if __name__ == "__main__":
    main()
