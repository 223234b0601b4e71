"""Training throughput: our jitted RL² against sb3-contrib's RecurrentPPO (PyTorch) on the
same bandit trial environment, with the same recurrent width, in one run.

Both learn 5-armed Bernoulli bandits, trials of 10 pulls (Duan's k=5, n=10 setting).
Theirs steps our family through the Gymnasium export (``adaptrl.tasks.gym_export.TrialEnv``:
one Gymnasium episode = one trial, observing observation, previous action, previous reward
and episode-done flag), in a ``DummyVecEnv``; ours runs trials inside ``jax.jit``. Both use
separate actor and critic recurrent cells of the same width (GRU for ours, LSTM for
RecurrentPPO, which has no GRU) and 4 PPO epochs over 4 minibatches per rollout. We report
environment steps per second of training (collection plus updates).

    .venv/bin/python benchmarks/rl2_vs_sb3.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
from _rl2_common import command, machine, now

from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.tasks.bandit import Bandit
from adaptrl.tasks.gym_export import TrialEnv


def ours(family, *, hidden: int, trial: int, iterations: int) -> tuple[float, float]:
    config = RL2Config(trial_episodes=trial, hidden=hidden, trials_per_iteration=256,
                       ppo_epochs=4, minibatches=4, discount=1.0)
    algo = RL2(config, family)
    state = algo.init(key=jax.random.PRNGKey(0))
    update = jax.jit(algo.update)
    t0 = time.perf_counter()
    state, m = update(state)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(iterations):
        state, m = update(state)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    steps = iterations * config.trials_per_iteration * trial * family.pulls
    return steps / seconds, compile_s


def theirs(family, *, hidden: int, trial: int, steps: int, envs: int) -> float:
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)  # small networks: one thread avoids oversubscription
    env = DummyVecEnv([lambda: TrialEnv(family, trial_episodes=trial) for _ in range(envs)])
    env.seed(0)
    n_steps = 128
    model = RecurrentPPO(
        "MlpLstmPolicy", env, n_steps=n_steps, batch_size=n_steps * envs // 4, n_epochs=4,
        gamma=1.0, seed=0, device="cpu", verbose=0,
        policy_kwargs=dict(lstm_hidden_size=hidden, n_lstm_layers=1, shared_lstm=False,
                           enable_critic_lstm=True, net_arch=[]))
    model.learn(total_timesteps=n_steps * envs)  # warm-up: first rollout and update
    t0 = time.perf_counter()
    start = model.num_timesteps
    model.learn(total_timesteps=steps, reset_num_timesteps=False)
    return (model.num_timesteps - start) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--sb3-steps", type=int, default=20_480)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--out", default="docs/results/rl2_vs_sb3.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    family, trial = Bandit(arms=5, pulls=1), 10
    ours_sps, compile_s = ours(family, hidden=args.hidden, trial=trial,
                               iterations=args.iterations)
    print(f"ours: {ours_sps:,.0f} env steps/s (compile {compile_s:.1f}s)", flush=True)
    theirs_sps = theirs(family, hidden=args.hidden, trial=trial, steps=args.sb3_steps,
                        envs=args.envs)
    print(f"sb3-contrib RecurrentPPO: {theirs_sps:,.0f} env steps/s", flush=True)
    ratio = ours_sps / theirs_sps
    print(f"ratio: {ratio:.1f}x", flush=True)
    if args.no_write:
        return
    text = "\n".join([
        "# RL² training throughput: adaptrl (JAX) vs sb3-contrib RecurrentPPO (PyTorch)", "",
        f"Command: `{command()}`  ", f"Machine: {machine()}  ", f"Date: {now()}  ",
        "torch 2.13.0 (CPU build), 1 intra-op thread (faster than 2 for these small networks). The machine was shared with other jobs.", "",
        "Task: 5-armed Bernoulli bandits, trials of 10 pulls (a trial = one Gymnasium "
        "episode for sb3-contrib, via `adaptrl.tasks.gym_export.TrialEnv`). Recurrent width "
        f"{args.hidden} for both (separate actor and critic cells: GRU for ours, LSTM for "
        "RecurrentPPO); 4 PPO epochs × 4 minibatches per rollout for both. ours: 256 trials "
        f"(2,560 steps) per iteration, {args.iterations} iterations timed after compilation; "
        f"sb3-contrib: {args.envs} envs in a DummyVecEnv × 128 steps per rollout, "
        f"{args.sb3_steps:,} steps timed after one warm-up rollout and update.", "",
        "| learner | environment steps / s of training |", "|---|---|",
        f"| adaptrl RL² (jitted, `lax.scan` + `vmap`) | {ours_sps:,.0f} |",
        f"| sb3-contrib RecurrentPPO | {theirs_sps:,.0f} |", "",
        f"Ratio: **{ratio:.1f}×** (target ≥ 20×: **{'met' if ratio >= 20 else 'NOT met'}**). "
        f"Our one-off compilation took {compile_s:.1f} s.", "",
        "The sb3 figure includes stepping our exported environment from Python (one jitted "
        "call per step), which is what any Gymnasium-based learner pays for this family.", "",
    ])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
