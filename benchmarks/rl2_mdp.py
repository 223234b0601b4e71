"""Reproduce Duan et al. (2016), Table 2: RL² on random tabular MDPs (10 states, 5 actions,
episodes of 10 steps) beside PSRL and random, n episodes per trial, on held-out tasks.

    .venv/bin/python benchmarks/rl2_mdp.py
    .venv/bin/python benchmarks/rl2_mdp.py --iterations 50 --no-write   # smoke run
    .venv/bin/python benchmarks/rl2_mdp.py --architecture transformer    # rl2_mdp_transformer.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np
from _rl2_common import (
    HEADER,
    TRANSFORMER_POLICY,
    add_common_args,
    command,
    curve_lines,
    machine,
    now,
    parse,
    reference_returns,
    rl2_returns,
    row,
    run_length,
    seed_lines,
    train_rl2,
)

from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.tasks.tabular_mdp import TabularMDP

# Greedy: Duan et al.'s Table 2 as quoted in a public re-implementation (not in REFERENCES.md)
PAPER = {10: {"psrl": 138.1, "greedy": 134.8, "rl2": 156.2}, 25: {"psrl": 408.8, "rl2": 445.7},
         50: {"psrl": 904.4, "rl2": 936.1}, 100: {"psrl": 1939.5, "rl2": 1913.7}}
TARGET = {10: 150.0}
# the library's settings for the family (``adaptrl train rl2 --tasks tabular-mdp`` uses them
# too); --episodes sets the trial length
SETTINGS = {k: v for k, v in RL2.paper_defaults["tabular-mdp"].items() if k != "trial_episodes"}
# ``--architecture transformer``: RL² with the causal-transformer policy, changes to SETTINGS
TRANSFORMER = dict(architecture="transformer", hidden=64, layers=2, heads=4, input_layer=0,
                   head_layer=0, value_time=False, lr=1e-3, iterations=300,
                   lr_anneal_iterations=300)
# the family check and the settings, and why (written into the results file)
NOTES = [
    "## The setting, checked against Duan et al. (2016), Sec. 4.2", "",
    "The `tabular-mdp` family matches the paper's description (and Osband et al. 2013, "
    "whose setting it reuses): 10 states, 5 actions; per state-action pair a Gaussian "
    "reward with unit variance whose mean is drawn from N(1, 1); transitions from a flat "
    "Dirichlet(1); episodes of T = 10 steps that always start in the first state (state 0; "
    "a public re-implementation quotes the paper: \"an episode always starts on the first "
    "state\"); n episodes of the same MDP per trial. The RL² input at every step is the "
    "one-hot current state, the one-hot previous action, the previous reward and the "
    "done flag of the previous step (`adaptrl.sampling.trials`), with the GRU state kept "
    "across the trial's episodes. Our random (99.9) and PSRL (134.1) rows match the "
    "paper's (100.1, 138.1); the family was left unchanged.", "",
    "Our **greedy** row (150.9) is far above the paper's Greedy (134.8): ours plans each "
    "episode on the posterior mean MDP under the true prior (an untried action's reward "
    "is taken as the prior mean 1, so it explores while what it knows looks worse than "
    "average), and with only 10 episodes exploiting early pays more than PSRL's "
    "posterior sampling. The paper does not define its Greedy in the material we have; it "
    "was evidently a weaker rule. So on these tasks the target of 150 equals what a "
    "simple Bayesian greedy planner reaches, and RL² would have to match it.", "",
    "## Settings and why", "",
    "Duan et al. trained with TRPO, a GRU-256 policy, γ = 0.99 and GAE λ = 0.3 (as we "
    "recall the paper's appendix; unverified) and batches of the order of 10^5 steps per "
    "iteration. Here: PPO, GRU-128, 256 trials (25,600 steps) per iteration, the three "
    "seeds training at once on the machine's 2 cores. The settings are the library's own "
    "for the family (`RL2.paper_defaults['tabular-mdp']`, also what `adaptrl train rl2 "
    "--tasks tabular-mdp` uses):", "",
    "- **a ReLU input layer of width 128** before the GRUs (`input_layer`): a GRU's gates "
    "are linear in its input, so conjunctions such as \"this action, and the reward was "
    "high\" must otherwise be built over several steps;",
    "- **the critic sees the fraction of the trial left** (`value_time`; the policy's input "
    "is unchanged): the return still to come is roughly proportional to it, and with "
    "λ = 0.3 the advantages lean on the value estimate (value loss 0.07 → 0.045 in a pilot);",
    "- γ = 0.99 over the whole 100-step trial, GAE λ = 0.3 (Duan's), entropy bonus 0.01, "
    "step size 2e-3 annealed linearly to 0 over the run of 2200 iterations, rewards × 0.1;",
    "- **the action head reads a ReLU layer of width 128 over the policy GRU's output and "
    "the step's raw input** (`head_layer`). The best action depends on the current state "
    "and on what the trial has shown about that state's actions; a linear head on the GRU "
    "alone can only use the current state where the GRU has already mixed it into its "
    "output, while a layer that sees both can do the look-up itself. This was the largest "
    "single step of all the changes tried (table below).", "",
    "Over three meta-training seeds the settings give 152.05, 151.94 and 149.67 (the table "
    "above pools them). The head layer was piloted on seed 0 only (300 iterations, below); "
    "seeds 1 and 2 are an independent check. The same three seeds with 1600 iterations "
    "(step size annealed over 1600) gave 149.50, 146.87 and 147.14 (147.84 ± 1.00 pooled; "
    "5456 / 5422 / 5426 s each, three at a time on a 2-core Intel Xeon), and without the "
    "head layer 136.16, 134.20 and 136.02 (135.46 ± 1.03 pooled, 1600 iterations; trained "
    "on a 2-core AMD EPYC machine, 3686 / 3669 / 3623 s each, two at a time): the head "
    "layer is worth about 12 per trial, the last 600 iterations about 3.4.", "",
    "How we got here (seed 0, the same 1000 held-out MDPs, total reward per trial):", "",
    "| settings | iterations | RL² |",
    "|---|---|---|",
    "| GRU-64, λ 0.95, entropy 0.01, constant step size | 400 | 116.6 |",
    "| the same with λ 0.5 | 400 | 123.0 |",
    "| GRU-128, λ 0.3, entropy 0.001, step size annealed | 600 | 123.46 ± 1.77 |",
    "| + input layer, + critic sees trial time, entropy 0.01 | 800 | 129.70 ± 1.84 |",
    "| the same, twice as long (the settings before the head layer) | 1600 | "
    "136.16 ± 1.77 |",
    "| the same with 1024 trials (102,400 steps, Duan's order) per iteration, 8 "
    "minibatches | 200 of 1150 | stopped: 12.5 s per iteration beside another benchmark "
    "(5.6× the 256-trial run), too slow to finish; its training return was 128.1 at "
    "iteration 200, which the 256-trial run reached near iteration 800 |",
    "| the transformer policy instead of the GRUs (rl2_mdp_transformer.md) | 300 | "
    "121.52 ± 1.77 |",
    "| the settings before the head layer + a privileged critic (`--set "
    "privileged_critic=true`: the value GRU also sees the MDP's rewards and transitions) | "
    "1600 | 136.87 ± 1.79 (value loss about half; 5649 s beside another run) |",
    "| the settings before the head layer through `adaptrl train rl2 --tasks tabular-mdp "
    "--iterations 4800` (step size annealed over 4800; scored on these tasks and with this "
    "file's evaluation key by `benchmarks/rl2_score_run.py runs/mdp-long`) | 4800 | 140.65 "
    "± 1.78 |",
    "| + head layer (seed 0 of the three above) | 1600 | 149.50 ± 1.66 |",
    "| the same, longer (this file's settings; seed 0 of the three above) | 2200 | "
    "**152.05 ± 1.67** |", "",
    "The 4800-iteration run took about 3 h on one core, over two sessions, resumed from its "
    "checkpoint (training return 141.0 over its last 400 iterations). Three times the run "
    "length bought 4.5 per trial on seed 0 (136.16 → 140.65); the head layer, at the same "
    "cost per iteration, bought 13.3 (136.16 → 149.50), leaving seed 0 1.2 short of the "
    "Bayesian greedy planner (150.71 with seed 0's evaluation key).", "",
    "Pilots of 300 iterations on the settings before the head layer (step size annealed "
    "over 4800, so near-constant; mean training trial return over iterations 250-300 beside "
    "the same run without the change): "
    "γ = 1 instead of 0.99, 121.8 against 124.9; one PPO epoch over 512 trials in 8 "
    "minibatches instead of four over 256 (about the same time per iteration) 123.3 "
    "against 126.6 at iterations 300-350; the privileged critic 123.9 against 124.9 (its "
    "value loss 0.029 against 0.055); an entropy bonus of 0.03 instead of 0.01, 123.2 "
    "against 124.9 (entropy 0.5-0.6 nats against 0.25-0.3, so exploration is not held back "
    "by the bonus); 8 minibatches instead of 4 (twice the gradient steps per iteration, "
    "2.8 s against 2.6 s per iteration), 120.8 against 122.5 at iterations 200-250, stopped "
    "there; one "
    "GRU-256 layer (Duan's width) instead of two GRU-128 layers, ahead early (118.0 against "
    "116.0 at iterations 50-100) but behind at 100-150 (118.9 against 120.6) and 2.9× the "
    "time per iteration (7.6 s), stopped there. Three more, aimed at the input (means over "
    "iterations 200-250 / 250-300 against 122.5 / 124.9): both GRUs also see the fractions "
    "of the episode and of the trial still to come (a finite-horizon policy depends on "
    "them) 122.8 / 123.2; the GRUs also see the previous step's input, so a reward can be "
    "bound to the state it was earned in without a memory step (the state is not in the "
    "next input) 120.4 at 200-220, stopped; one GRU shared by the policy and value heads "
    "114.0 against 116.0 at 50-80, stopped. None of these changed the settings. The head "
    "layer did (`adaptrl train rl2 --tasks tabular-mdp --iterations 4800 --set "
    "algo.head_layer=128`, stopped at 320; means over iterations 50-100, 100-150, 200-250, "
    "250-300): 121.8, 124.3, 126.9, 127.7 against 116.0, 120.6, 122.5, 124.9; a second such "
    "layer before the value head as well (`algo.head_layer=128`, plus a temporary "
    "value-side switch) was no better (120.4, 123.4, 126.2, 125.9) and was not kept.", "",
    "## Where RL² stands against greedy", "",
    "In total RL² (151.22) and the Bayesian greedy planner (150.93) are level, within "
    "each other's confidence intervals, but not episode by episode (table above): RL² is "
    "ahead in episodes 1-4 (it exploits a good reward inside the episode, which the "
    "per-episode planners cannot), within 0.13 of it in episodes 5-6 and behind from "
    "episode 7 on, ending at 16.65 per episode against greedy's 17.54 (with 1600 "
    "iterations: ahead in 1-3, behind from 5, 16.25 at the end). Greedy does not need its "
    "transition model to get there: the `myopic` row, the same posterior acting on the "
    "mean rewards of the current state alone, scores as much (table above). What is left "
    "is remembering the 50 state-action reward estimates and trying untried actions while "
    "the known ones look below the prior mean of 1, late in the trial; that is where RL² "
    "still loses. Before the head layer the curve flattened much earlier (11.09, 12.43, "
    "13.18, 13.51, ... 14.54 per episode over the same three seeds; the 4800-iteration "
    "run 11.25 ... 15.07): the look-up of the current state's remembered rewards was the "
    "bottleneck, not the memory alone.", "",
    "Training trial return (per iteration, printed every 50, three seeds): about 136-137 "
    "at iteration 800 with 1600 iterations, 144.7-152.6 over their last 200; with 2200 "
    "iterations 141.1-147.5 at iteration 1000 and 146.9-154.6 over the last 200. Duan et "
    "al. used roughly 10× our batch per iteration. Acting with the most likely action at "
    "meta-test instead of sampling (`--seeds 3 --reuse --no-write --set eval_greedy=true` "
    "on the kept states) gives 151.61 ± 0.96 (152.66, 152.74, 149.43; 151.22 sampled; "
    "with 1600 iterations 148.49 against 147.84): little difference, so this file reports "
    "the sampled policy as trained.", "",
    "Pilots of 150 iterations (constant step size 2e-3, entropy 0.01, GRU-128, λ 0.3; "
    "held-out mean ± 95% CI): plain 116.3 ± 1.7; with the trial-time critic 119.2 ± 1.8; "
    "with it and the input layer 121.0 ± 1.8 (1.45× the time per iteration); trial-time "
    "critic with λ 0.9 115.8 ± 1.8; plain with step size 5e-4 112.1 ± 1.9. In every pilot "
    "the policy's entropy fell from 1.6 to about 0.3-0.4 nats within 75 iterations while "
    "the return was still far below greedy's: the policy commits early.", "",
]

TRANSFORMER_NOTES = [
    "## Settings", "",
    TRANSFORMER_POLICY + " Otherwise the GRU settings of rl2_mdp.md, with step size 1e-3 "
    "annealed to 0 and no input layer or trial-time critic (the transformer sees positions). "
    "300-iteration runs, 20 to 28 minutes each on one core (seeds 1 and 2 ran two at a "
    "time): 121.52, 123.03 and 123.04 over the three seeds, about where the GRU stands "
    "after a similar time (its 150-iteration pilots gave 121.0, 800 iterations 129.7), so "
    "on this family the transformer is no shortcut to the target. Its adaptation curve "
    "flattens earlier than the GRU's (12.3 by episode 5, 12.8 at episode 10).", "",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=10, help="episodes per trial (n)")
    add_common_args(p, "docs/results/rl2_mdp{}.md")
    args = parse(p)
    n = args.episodes
    opts = {**SETTINGS, **(TRANSFORMER if args.suffix else {}), **args.overrides}
    iters, opts = run_length(opts, args.iterations)
    family = TabularMDP()
    config = RL2Config(trial_episodes=n, **opts)
    tasks = family.tasks("test", args.test_tasks)
    rl2, rl2_ep, times = [], [], []
    for seed in args.seed_list:
        algo, state, seconds, compile_s = train_rl2(
            family, config, iters, seed=seed, name=f"rl2_mdp_n{n}{args.suffix}{args.tag}",
            reuse=args.reuse)
        times.append((seconds, compile_s))
        rl2_ep.append(rl2_returns(algo, state, tasks, n, seed=seed))
        rl2.append(rl2_ep[-1].sum(-1))
        print(f"seed {seed}: RL² {rl2[-1].mean():.2f} (train {seconds:.0f}s)", flush=True)
    refs_ep = {name: [reference_returns(name, family, tasks, n, seed=s,
                                        family_name="tabular-mdp") for s in args.seed_list]
               for name in ("random", "psrl", "greedy", "myopic")}
    refs = {name: [r.sum(-1) for r in per] for name, per in refs_ep.items()}
    oracle = np.asarray(jax.vmap(family.optimum)(tasks)) * n
    paper = PAPER.get(n, {})
    lines = [HEADER]
    summaries = {}
    for name, vals in [("RL² (ours)", rl2), ("PSRL", refs["psrl"]), ("greedy", refs["greedy"]),
                       ("myopic", refs["myopic"]),
                       ("random", refs["random"]), ("oracle (knows the MDP)", [oracle])]:
        key = {"RL² (ours)": "rl2", "PSRL": "psrl"}.get(name, name)
        text, summaries[key] = row(name, vals, str(paper.get(key, "—")))
        lines.append(text)
    result = summaries["rl2"]["mean"]
    if n in TARGET:
        met = result >= TARGET[n]
        lines += ["", f"Target ≥ {TARGET[n]:.0f}: RL² mean {result:.2f} — "
                  f"**{'met' if met else 'NOT met'}**."]
    lines += ["", f"RL² config: `{config}`, {iters} iterations "
              f"({iters * config.trials_per_iteration * n:,} episodes of meta-training per "
              "seed).", *seed_lines(args.seed_list, rl2, times), ""]
    print("\n".join(lines), flush=True)
    if args.no_write:
        return
    head = [
        "# RL² on random tabular MDPs (Duan et al. 2016, Table 2)"
        + (", transformer policy" if args.suffix else ""), "",
        f"Command: `{command()}`  ", f"Machine: {machine()}  ", f"Date: {now()}  ",
        f"Held-out tasks: {args.test_tasks} (meta-test split); meta-training seeds: "
        f"{args.seeds}; one trial of n = {n} episodes (10 steps each) per task per seed.", "",
        "Total reward per trial. Family `tabular-mdp`: 10 states, 5 actions, Dirichlet(1) "
        "transitions, mean rewards ~ N(1, 1), observed rewards with unit-variance noise, every "
        "episode starts in state 0. PSRL (Osband et al. 2013) samples an MDP from its "
        "posterior each episode; the oracle row is n × the exact optimal episode return "
        "(finite-horizon value iteration on the true MDP). The Duan et al. column is copied "
        "from REFERENCES.md (marked unverified there), except Greedy's 134.8 (the paper's "
        "Table 2 as quoted by a public re-implementation). RL² is trained with PPO (not TRPO) "
        "on the 2-CPU machine named above, sharing its cores with other runs (the wall "
        "times below say how long each seed took).", "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    curve = ["## Adaptation curve within the trial", "", *curve_lines(
        {"RL² (ours)": rl2_ep, "greedy": refs_ep["greedy"], "myopic": refs_ep["myopic"],
         "PSRL": refs_ep["psrl"],
         "random": refs_ep["random"]}, out.with_suffix(".png"),
        title=f"tabular-mdp, n = {n}: {args.test_tasks} held-out MDPs, {args.seeds} seed(s)",
        unit="episodes", optimum=float(oracle.mean() / n)), ""]
    out.write_text("\n".join(head + lines + curve
                             + (TRANSFORMER_NOTES if args.suffix else NOTES)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
