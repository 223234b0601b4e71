"""RL²: fast reinforcement learning via slow reinforcement learning (Duan et al. 2016;
Wang et al. 2016, "Learning to reinforcement learn").

A recurrent policy's hidden state *is* the learning algorithm. It is meta-trained with an
ordinary RL algorithm (here PPO, Schulman et al. 2017, instead of the paper's TRPO) on
**trials**: ``trial_episodes`` episodes of one task, the hidden state kept across episode
boundaries and reset between trials (:mod:`adaptrl.sampling.trials`). The objective is the
discounted return of the whole trial, so exploring in early episodes pays when it raises
the return of later ones.

Trials come from the algorithm's sampler (:mod:`adaptrl.sampling`). For JAX-native
families one iteration (collect, advantages, PPO epochs) is a single jitted function:
trials are a ``lax.scan`` over time, ``vmap``-ed over trials, each on its own task. For
host families (Gymnasium) the same code collects the trials in worker processes and jits
the learning step on its own.

At meta-test time, adaptation is simply running the policy: the adaptation curve is the
return of episode 1, 2, ... of a trial on each held-out task (``curve_unit = "episodes"``).

Bandits (Duan's Table 1): a trial of n pulls is ``algo.trial_episodes=n``. An episode is
one pull, as in the paper, so the family's ``tasks.pulls`` stays 1 (RL²'s setting for the
bandit family sets it; a new run with another value is refused, since ``tasks.pulls=30``
would silently make trials of ``30 * trial_episodes`` pulls). The total reward per trial is
the sum of the adaptation curve; the harness reports it as ``trial_total`` beside
``trial_optimum``, the optimum per trial (the family's per-episode optimum times the
trial's episodes).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Literal

import gymnasium as gym
import jax
import jax.numpy as jnp
import optax

from adaptrl import policies
from adaptrl.algos.base import Algorithm
from adaptrl.errors import UserError
from adaptrl.ops import pg
from adaptrl.ops.returns import gae
from adaptrl.sampling import trials
from adaptrl.sampling.trials import Trial
from adaptrl.tasks.bandit import Bandit
from adaptrl.tasks.base import RLFamily


@dataclasses.dataclass(frozen=True)
class RL2Config:
    trial_episodes: int = 10
    # episodes of one task per trial; the hidden state is reset only between trials (on
    # bandits an episode is one pull, so this is the number of pulls per trial)
    trials_per_iteration: int = 128
    # trials collected per iteration, each on a freshly drawn task
    architecture: Literal["gru", "transformer"] = "gru"
    # the policy network: two GRUs (policy and value), or a small causal transformer over
    # the trial so far whose attention cache is the memory (one trunk, two heads)
    hidden: int = 128
    # width of the policy GRU and of the value GRU, or of the transformer
    layers: int = 2
    # transformer blocks (attention + MLP); transformer only
    heads: int = 4
    # attention heads, dividing ``hidden``; transformer only
    lr: float = 1e-3
    # Adam step size
    lr_anneal_iterations: int = 0
    # if > 0, the step size decays linearly from ``lr`` to 0 over this many iterations
    # (set it to the training length); 0 keeps it constant
    max_grad_norm: float = 1.0
    # global gradient-norm clip
    discount: float = 0.99
    # discount γ over the whole trial (episode boundaries are not terminal)
    gae_lambda: float = 0.95
    # λ of GAE
    reward_scale: float = 1.0
    # multiply rewards by this before computing returns (keeps value targets near 1)
    ppo_clip: float = 0.2
    # clip range ε of the PPO objective
    ppo_epochs: int = 4
    # passes over each iteration's trials
    minibatches: int = 4
    # minibatches (of whole trials) per pass
    value_coef: float = 0.5
    # weight of the value regression loss
    entropy_coef: float = 0.01
    # weight of the entropy bonus
    normalize_advantages: bool = True
    # centre and scale advantages per minibatch
    init_log_std: float = 0.0
    # initial log standard deviation of Gaussian policies
    eval_trials: int = 1
    # trials per task averaged at meta-test time (adaptation curve)
    eval_greedy: bool = False
    # at meta-test time act with the policy's most likely action instead of sampling
    input_layer: int = 0
    # if > 0, a ReLU layer of this width over the input, shared by the policy and value GRUs
    value_time: bool = False
    # the value head (only) also sees the fraction of the trial still to come
    privileged_critic: bool = False
    # the value GRU (only) also sees the task's parameters (``family.task_features``), as an
    # asymmetric actor-critic; the policy never does, at meta-training or meta-test (GRU only)
    head_layer: int = 0
    # if > 0, the action head reads a ReLU layer of this width over the policy GRU's output
    # (or the transformer's trunk) and the step's input (current state, previous action and
    # reward)

    # the fields that change only meta-test, never training or the parameters
    EVAL_ONLY: ClassVar[tuple[str, ...]] = ("eval_trials", "eval_greedy")

    def __post_init__(self) -> None:
        for name in ("trial_episodes", "trials_per_iteration", "hidden", "ppo_epochs",
                     "minibatches", "eval_trials"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.architecture == "transformer" and (
                not 1 <= self.layers <= 64 or self.heads < 1 or self.hidden % self.heads):
            raise ValueError("a transformer needs 1 <= layers <= 64 and heads dividing hidden")
        if self.privileged_critic and self.architecture != "gru":
            raise ValueError("privileged_critic needs architecture gru")
        if not 0 <= self.input_layer <= 4096 or not 0 <= self.head_layer <= 4096:
            raise ValueError("input_layer and head_layer must be between 0 and 4096")
        if self.lr_anneal_iterations < 0:
            raise ValueError("lr_anneal_iterations must be >= 0")
        if self.trials_per_iteration % self.minibatches:
            raise ValueError("trials_per_iteration must be divisible by minibatches")
        if self.hidden > 4096 or self.trial_episodes > 100_000:
            raise ValueError("hidden must be <= 4096 and trial_episodes <= 100000")
        if not 0 < self.discount <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError("discount must be in (0, 1] and gae_lambda in [0, 1]")
        if self.lr <= 0 or self.ppo_clip <= 0 or self.max_grad_norm <= 0:
            raise ValueError("lr, ppo_clip and max_grad_norm must be positive")
        if self.reward_scale <= 0:
            raise ValueError("reward_scale must be positive")


# Per-family settings. Duan et al. used TRPO with GRU-256 policies and far more samples;
# these are the PPO settings of our benchmarks (benchmarks/rl2_*.py, docs/results/), which
# train in 2 to 60 minutes on one CPU core. For the bandit family, an episode is one pull
# (``tasks.pulls=1``) and a trial is ``trial_episodes`` pulls: these are the k=10, n=100
# settings of docs/results/rl2_bandits.md (with the family's 5 arms unless
# ``tasks.arms`` is set). ``lr_anneal_iterations`` equals
# ``iterations``: through ``adaptrl train`` the schedule follows the run's length (an
# ``--iterations`` of 200 anneals over 200) unless ``algo.lr_anneal_iterations`` is set.
PAPER: dict[str, dict[str, Any]] = {
    "bandit": {"iterations": 1000, "trial_episodes": 100, "trials_per_iteration": 256,
               "hidden": 128, "input_layer": 128, "value_time": True, "discount": 1.0,
               "lr": 2e-3, "lr_anneal_iterations": 1000, "entropy_coef": 0.001,
               "reward_scale": 0.1, "gae_lambda": 0.9, "tasks": {"pulls": 1}},
    "tabular-mdp": {"iterations": 2200, "trial_episodes": 10, "trials_per_iteration": 256,
                    "hidden": 128, "input_layer": 128, "value_time": True, "discount": 0.99,
                    "gae_lambda": 0.3, "lr": 2e-3, "lr_anneal_iterations": 2200,
                    "entropy_coef": 0.01, "reward_scale": 0.1, "head_layer": 128},
    "point-nav": {"iterations": 300, "trial_episodes": 2, "trials_per_iteration": 64},
}


def trial_gae(reward, value, mask, *, discount: float, lam: float):
    """GAE over one trial ``[S]``: only the trial's end is terminal, and the steps masked
    after an early termination (``mask = 0``) are skipped, as if cut out, so an episode's
    terminal step bootstraps from the next episode's first value. The values of masked
    steps are never trained (the value loss is masked), so they must not enter the targets.
    Masked steps get an advantage that the masked losses ignore; with no masked step this is
    plain GAE with one terminal at the end."""
    order = jnp.argsort(1.0 - mask, stable=True)  # real steps in their order, then masked
    last_real = mask.sum().astype(jnp.int32) - 1
    end = (jnp.arange(mask.shape[0]) >= last_real).astype(reward.dtype)
    adv = gae(reward[order], value[order], end, discount=discount, lam=lam)
    return jnp.zeros_like(adv).at[order].set(adv)


def _minibatch_step(algo: RL2, carry, batch):
    """One Adam step of the PPO loss on a minibatch of whole trials."""
    params, opt_state = carry
    (loss, aux), grads = jax.value_and_grad(algo.loss, has_aux=True)(params, batch)
    updates, opt_state = algo.optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), (loss, *aux,
                                                                optax.tree.norm(grads))


def _epoch(algo: RL2, data, carry, key):
    """One pass over the iteration's trials in shuffled minibatches."""
    c = algo.config
    perm = jax.random.permutation(key, c.trials_per_iteration)
    shuffled = jax.tree.map(lambda x: x[perm].reshape(c.minibatches, -1, *x.shape[1:]), data)
    return jax.lax.scan(functools.partial(_minibatch_step, algo), carry, shuffled)


class RL2(Algorithm):
    """Registered as ``rl2``."""

    Config = RL2Config
    kinds = ("rl",)
    curve_unit = "episodes"
    paper_defaults = PAPER
    default_iterations = 300

    family: RLFamily  # kinds = ("rl",)

    def __init__(self, config: RL2Config, family: RLFamily, *, sampler=None):
        super().__init__(config, family, sampler=sampler)
        space = family.action_space
        discrete = isinstance(space, gym.spaces.Discrete)
        steps = config.trial_episodes * family.horizon
        shape = (trials.input_dim(family), trials.action_encoding_dim(space), discrete)
        common: dict[str, Any] = dict(init_log_std=config.init_log_std,
                                      input_layer=config.input_layer,
                                      head_layer=config.head_layer,
                                      trial_steps=steps if config.value_time else 0)
        self.policy: policies.RecurrentPolicy | policies.TransformerPolicy
        if config.architecture == "transformer":
            self.policy = policies.TransformerPolicy(
                *shape, max_steps=steps, width=config.hidden, layers=config.layers,
                heads=config.heads, **common)
        else:
            context = family.task_features_dim() if config.privileged_critic else 0
            self.policy = policies.RecurrentPolicy(*shape, hidden=config.hidden,
                                                   context_dim=context, **common)
        lr = config.lr
        if config.lr_anneal_iterations:
            # one Adam step per minibatch: ppo_epochs * minibatches steps per iteration
            steps = config.lr_anneal_iterations * config.ppo_epochs * config.minibatches
            lr = optax.linear_schedule(config.lr, 0.0, steps)
        self.optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                                     optax.adam(lr))
        # the learning step, jitted on its own for host samplers (inlined when the whole
        # update is jitted)
        self._learn = jax.jit(self._learn_from_trials)

    @classmethod
    def check_new_run(cls, config: RL2Config, family) -> None:
        if isinstance(family, Bandit) and family.pulls != 1:
            raise UserError(
                f"rl2 on bandit: a trial is algo.trial_episodes pulls, one per episode, so "
                f"tasks.pulls must stay 1 (tasks.pulls={family.pulls} would make trials of "
                f"{family.pulls * config.trial_episodes} pulls); for {family.pulls}-pull "
                f"trials use --set algo.trial_episodes={family.pulls}")

    @property
    def default_eval_steps(self) -> int:
        return self.config.trial_episodes - 1

    # ---- state -----------------------------------------------------------------------
    def init(self, *, key):
        k_init, key = jax.random.split(key)
        params = self.policy.init(key=k_init)
        return {"params": params, "opt_state": self.optimizer.init(params), "key": key,
                "iteration": jnp.array(0, jnp.int32)}

    # ---- collect ---------------------------------------------------------------------
    def _trials(self, params, tasks, key, episodes: int, greedy: bool = False) -> Trial:
        keys = jax.random.split(key, jax.tree.leaves(tasks)[0].shape[0])
        return self._sampler.trials(self.policy, params, tasks, keys=keys, episodes=episodes,
                                   greedy=greedy)

    def _advantages(self, tr: Trial):
        """GAE over each whole trial's real steps (:func:`trial_gae`)."""
        c = self.config
        adv = jax.vmap(functools.partial(trial_gae, discount=c.discount, lam=c.gae_lambda))(
            tr.reward * c.reward_scale, tr.value, tr.mask)
        return adv, adv + tr.value

    # ---- PPO loss ----------------------------------------------------------------------
    def loss(self, params, batch):
        tr, adv, targets, context = batch
        dist, value = jax.vmap(functools.partial(trials.replay, self.policy, params))(
            tr.inputs, tr.mask, context)
        logp = policies.log_prob(dist, tr.action)
        c = self.config
        flat = lambda x: x.reshape(-1)  # noqa: E731
        mask = flat(tr.mask)
        adv = flat(adv)
        if c.normalize_advantages:
            adv = pg.normalize(adv, mask)
        policy_loss = pg.ppo_clip_loss(flat(logp), flat(tr.log_prob), adv, mask,
                                       clip=c.ppo_clip)
        value_loss = pg.masked_mean((flat(value) - flat(targets)) ** 2, mask)
        ent = pg.masked_mean(flat(policies.entropy(dist)), mask)
        approx_kl = pg.masked_mean(flat(tr.log_prob - logp), mask)
        total = policy_loss + c.value_coef * value_loss - c.entropy_coef * ent
        return total, (policy_loss, value_loss, ent, approx_kl)

    # ---- one iteration -----------------------------------------------------------------
    def update(self, state):
        c = self.config
        key, k_tasks, k_collect, k_epochs = jax.random.split(state["key"], 4)

        # collect: one trial per freshly drawn meta-train task
        tasks = self.family.tasks("train", c.trials_per_iteration, key=k_tasks)
        tr = self._trials(state["params"], tasks, k_collect, c.trial_episodes)

        # learn: advantages over whole trials, then PPO
        return self._learn(state, key, k_epochs, tasks, tr)

    def _learn_from_trials(self, state, key, k_epochs, tasks, tr: Trial):
        c = self.config
        adv, targets = self._advantages(tr)
        context = jax.vmap(lambda t: trials.critic_context(self.family, self.policy, t))(tasks)

        # meta-update: PPO epochs over minibatches of whole trials (BPTT through each trial)
        epoch = functools.partial(_epoch, self, (tr, adv, targets, context))
        (params, opt_state), (loss, pol, val, ent, kl, grad_norm) = jax.lax.scan(
            epoch, (state["params"], state["opt_state"]), jax.random.split(k_epochs, c.ppo_epochs))

        ep_returns = trials.episode_returns(tr, c.trial_episodes)  # [B, E]
        metrics = {
            "trial_return": ep_returns.sum(-1).mean(),
            "return_episode1": ep_returns[:, 0].mean(),
            f"return_episode{c.trial_episodes}": ep_returns[:, -1].mean(),
            "policy_loss": pol.mean(), "value_loss": val.mean(), "entropy": ent.mean(),
            "approx_kl": kl[-1].mean(), "loss": loss.mean(),
            "grad_norm": grad_norm.mean(),  # of each minibatch's gradient, before clipping
        }
        if self.family.has_optimum:
            metrics["optimum"] = jax.vmap(self.family.optimum)(tasks).mean()
        new_state = dict(state, params=params, opt_state=opt_state, key=key,
                         iteration=state["iteration"] + 1)
        return new_state, metrics

    # ---- meta-test -----------------------------------------------------------------------
    def adaptation_curve(self, state, tasks, *, key, steps):
        """Return (and success) of episode 1..``steps + 1`` of a trial on each task:
        ``{"return": [num_tasks, steps + 1]}``, averaged over ``eval_trials`` trials;
        actions sampled from the policy (its most likely ones with ``eval_greedy``)."""
        episodes = steps + 1
        if self.config.architecture == "transformer" and episodes > self.config.trial_episodes:
            raise UserError(f"the transformer policy attends to at most trial_episodes="
                            f"{self.config.trial_episodes} episodes; asked for {episodes}")
        n = jax.tree.leaves(tasks)[0].shape[0]
        reps = self.config.eval_trials
        tiled = jax.tree.map(lambda x: jnp.repeat(x, reps, axis=0), tasks)
        tr = self._trials(state["params"], tiled, key, episodes, self.config.eval_greedy)
        out = {"return": trials.episode_returns(tr, episodes).reshape(n, reps, episodes)
               .mean(1)}
        if self.family.has_success:
            out["success"] = trials.episode_successes(tr, episodes).reshape(
                n, reps, episodes).mean(1)
        return out
