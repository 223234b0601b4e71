"""Task-embedding multi-task learner: a policy (or regressor) conditioned on a learned
embedding z of the task, inferred from the task's own first data.

One network f_θ(input, z) serves every task; what distinguishes tasks is z. An encoder
φ_ψ maps each item of the task's data seen so far — a labelled shot (x, y) for regression,
a transition (s, a, r, s') for RL — to a vector, and the embedding is their mean
(:func:`infer_embedding`; a permutation-invariant set encoder, as in Neural Processes,
Garnelo et al. 2018, and PEARL's context encoder without its probabilistic bottleneck):

    z(D) = (1 / |D|) Σ_{d ∈ D} φ_ψ(d),        z(∅) = 0  (the un-adapted embedding)

θ and ψ are learned end to end (Adam), so the encoder is trained for exactly the inference
it performs at meta-test time, and a new task's embedding costs one forward pass — no
gradient steps, no per-task parameters to fit.

* **Regression** (sinusoid): each task's K context shots are cut at a random size
  n ~ U{0..K}; the loss is the MSE of f_θ(x, z(first n shots)) on K fresh query points.
* **RL**: each task runs a trial of ``trial_episodes`` episodes; episode k acts under
  π_θ(a | s, z_k) with z_k the embedding of episodes 0..k-1 (z_0 = 0). The loss is PPO's
  clipped objective over every episode, with GAE over the whole trial (only its end is
  terminal, as in RL²: the first episode's actions are credited with the later episodes'
  return, since their transitions make the embedding) and a value MLP over [s, z, t, k],
  plus, with ``reward_coef > 0``, the MSE of a reward decoder r̂(s, a, s', z_k) on the
  rewards of episode k ≥ 1 — an auxiliary that makes z carry what distinguishes tasks
  (cf. VariBAD's reward decoder). Gradients reach ψ through both.

Why an encoder and not a per-task embedding table over a fixed pool (``train_pool``): the
table needs a fixed finite pool, while MAML's sinusoid and point-nav draw fresh tasks every
iteration; and at meta-test a table-trained network must have z found by gradient steps
on z alone, an inner optimisation that meta-training never practised (sinusoid's phase
makes it multi-modal in z), whereas the encoder is trained on the very inference it runs.
The learner still trains on a pool when the family has one (``--set tasks.train_pool=N``).

The adaptation curve counts data: point k is the performance with the embedding inferred
from the first k shots (``curve_unit = "shots"``), or the return of episode k+1 of a trial
with z inferred from its first k episodes (``"episodes"``, as for RL²). For JAX-native
families one iteration (collect, learn) is one jitted function; host families collect
through the host sampler with the learning step jitted on its own.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, cast

import gymnasium as gym
import jax
import jax.numpy as jnp
import optax

from adaptrl import policies
from adaptrl.algos.base import Algorithm
from adaptrl.ops import pg
from adaptrl.ops.returns import gae
from adaptrl.policies import MLP
from adaptrl.sampling import rollout
from adaptrl.sampling.rollout import Trajectory
from adaptrl.sampling.trials import action_encoding_dim, encode_action
from adaptrl.tasks.base import RegressionFamily


@dataclasses.dataclass(frozen=True)
class TaskEmbeddingConfig:
    embedding_dim: int = 8
    # width of the task embedding z
    encoder_hidden: tuple[int, ...] = (64, 64)
    # hidden widths of the encoder MLP φ applied to each shot (x, y) or transition (s, a, r, s')
    hidden: tuple[int, ...] = (100, 100)
    # hidden widths of the regressor (or policy, value and reward-decoder) MLP over [input, z]
    meta_batch_size: int = 25
    # tasks per meta-iteration (RL: one trial each)
    shots: int = 10
    # regression: K; each task's embedding is inferred from its first n ~ U{0..K} of K shots
    # and scored on K fresh query points
    trial_episodes: int = 3
    # RL: episodes per trial in meta-training; episode k acts under the embedding of the
    # trial's episodes 0..k-1
    lr: float = 1e-3
    # Adam step size (all networks)
    max_grad_norm: float = 1.0
    # global gradient-norm clip
    discount: float = 0.99
    # RL: discount γ within an episode
    gae_lambda: float = 0.95
    # RL: λ of GAE
    ppo_clip: float = 0.2
    # RL: clip range ε of the PPO objective
    ppo_epochs: int = 4
    # RL: full-batch Adam steps on each iteration's trials
    value_coef: float = 0.5
    # RL: weight of the value regression loss
    entropy_coef: float = 0.0
    # RL: weight of the entropy bonus
    reward_coef: float = 1.0
    # RL: weight of the reward-decoder loss that shapes the embedding (0: policy loss only)
    init_log_std: float = 0.0
    # RL: initial log standard deviation of Gaussian policies
    eval_trials: int = 10
    # RL: trials per task averaged at meta-test time

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "meta_batch_size", "shots", "trial_episodes",
                     "ppo_epochs", "eval_trials"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("hidden", "encoder_hidden"):
            widths = getattr(self, name)
            if not widths or any(w < 1 or w > 4096 for w in widths):
                raise ValueError(f"{name} widths must be between 1 and 4096")
        if self.embedding_dim > 4096 or self.shots > 100_000 or self.trial_episodes > 1000:
            raise ValueError("embedding_dim <= 4096, shots <= 100000, trial_episodes <= 1000")
        if self.meta_batch_size * self.trial_episodes > 100_000:
            raise ValueError("meta_batch_size * trial_episodes is too large (max 100000)")
        if not 0 < self.discount <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError("discount must be in (0, 1] and gae_lambda in [0, 1]")
        if self.lr <= 0 or self.ppo_clip <= 0 or self.max_grad_norm <= 0:
            raise ValueError("lr, ppo_clip and max_grad_norm must be positive")
        if min(self.value_coef, self.entropy_coef, self.reward_coef) < 0:
            raise ValueError("value_coef, entropy_coef and reward_coef must be >= 0")


# Per-family settings (ours: no paper fixes them; chosen on meta-training tasks, see
# docs/results/task_embedding.md). Sinusoid keeps MAML's regressor size, meta-batch and K.
# Point-nav trains on trials of 4 episodes, so that every point of the meta-test curve
# (0-3 episodes of context) is one it was trained on: with trials of 2 the return fell
# after the second episode of context (a mean over more transitions than it had seen).
PAPER: dict[str, dict[str, Any]] = {
    "sinusoid": {"iterations": 20_000, "meta_batch_size": 25, "shots": 10,
                 "hidden": (40, 40), "encoder_hidden": (40, 40), "embedding_dim": 8},
    "point-nav": {"iterations": 200, "meta_batch_size": 40, "trial_episodes": 4,
                  "hidden": (64, 64), "encoder_hidden": (64, 64), "embedding_dim": 8,
                  "lr": 3e-3, "ppo_epochs": 10, "reward_coef": 10.0},
}


def infer_embedding(encoder: MLP, params, items: jax.Array, mask: jax.Array) -> jax.Array:
    """The task embedding of a set of items: z = Σ_i m_i φ(items_i) / max(Σ_i m_i, 1).

    ``items [n, f]`` (shots or transitions), ``mask [n]`` (1 for items seen, 0 for padding);
    returns ``[embedding_dim]``, the zero vector when no item is seen."""
    feats = cast(jax.Array, encoder.apply({"params": params}, items))
    return (feats * mask[:, None]).sum(0) / jnp.maximum(mask.sum(), 1.0)


def embeddings_before_each(encoder: MLP, params, items: jax.Array,
                           mask: jax.Array) -> jax.Array:
    """The embedding each episode of a trial acts under: ``items [E, n, f]``, ``mask [E, n]``
    per episode; row k of the result ``[E, embedding_dim]`` is :func:`infer_embedding` of
    episodes 0..k-1 together (row 0: nothing seen, the zero vector)."""
    feats = cast(jax.Array, encoder.apply({"params": params}, items))
    sums = (feats * mask[..., None]).sum(1)  # [E, d]
    counts = mask.sum(1)  # [E]
    before = jnp.cumsum(sums, 0) - sums  # exclusive prefix sums
    seen = jnp.cumsum(counts) - counts
    return before / jnp.maximum(seen, 1.0)[:, None]


def _time_features(t, horizon: int):
    frac = (t.astype(jnp.float32) / horizon)[..., None]
    return jnp.concatenate([frac, frac**2], axis=-1)


@dataclasses.dataclass(frozen=True)
class EmbeddedPolicy:
    """π(a | s, z): an MLP policy over ``[obs, z]``; its parameters are
    ``{"policy": the MLP policy's, "z": [embedding_dim]}`` so a sampler can run each task
    under its own embedding (``per_task``)."""

    base: policies.Policy

    def apply(self, params, obs: jax.Array) -> policies.Distribution:
        z = jnp.broadcast_to(params["z"], (*obs.shape[:-1], params["z"].shape[-1]))
        return self.base.apply(params["policy"], jnp.concatenate([obs, z], axis=-1))


class TaskEmbedding(Algorithm):
    """Registered as ``task-embedding``."""

    Config = TaskEmbeddingConfig
    kinds = ("rl", "regression")
    paper_defaults = PAPER
    default_iterations = 300

    def __init__(self, config: TaskEmbeddingConfig, family, *, sampler=None):
        super().__init__(config, family, sampler=sampler)
        c = config
        self.encoder = MLP(c.encoder_hidden, c.embedding_dim)
        if family.kind == "regression":
            self.net = MLP(c.hidden, family.output_dim)
        else:
            obs_dim = gym.spaces.flatdim(family.observation_space)
            self._action_space = family.action_space
            self._item_dim = 2 * obs_dim + action_encoding_dim(family.action_space) + 1
            self._input_dim = obs_dim
            base = policies.policy_for(family.observation_space, family.action_space,
                                       hidden=c.hidden, init_log_std=c.init_log_std)
            self.policy = EmbeddedPolicy(dataclasses.replace(base,
                                                             obs_dim=obs_dim + c.embedding_dim))
            self.value_net = MLP(c.hidden, 1)
            self.decoder = MLP(c.hidden, 1)
        self.optimizer = optax.chain(optax.clip_by_global_norm(c.max_grad_norm),
                                     optax.adam(c.lr))
        if family.kind == "rl":
            # the value MLP's gradient is clipped on its own, so that large value errors
            # (returns of -40 on point-nav) do not shrink the policy's and encoder's steps
            self.optimizer = optax.multi_transform(
                {"value": self.optimizer, "rest": self.optimizer},
                lambda params: {k: "value" if k == "value" else "rest" for k in params})
        # the learning step, jitted on its own for host samplers (inlined when the whole
        # update is jitted)
        self._learn = jax.jit(self._learn_from_trials)

    @property
    def curve_unit(self) -> str:  # type: ignore[override]
        return "shots" if self.family.kind == "regression" else "episodes"

    @property
    def default_eval_steps(self) -> int:
        c = self.config
        return c.shots if self.family.kind == "regression" else c.trial_episodes

    def curve_axis(self) -> str:
        return f"{super().curve_axis()} (z inferred from them)"

    # ---- state -----------------------------------------------------------------------
    def init(self, *, key):
        c = self.config
        k_net, k_enc, k_value, k_dec, key = jax.random.split(key, 5)
        if self.family.kind == "regression":
            fam = cast(RegressionFamily, self.family)
            params = {
                "net": self.net.init(k_net, jnp.zeros((1, fam.input_dim + c.embedding_dim)))[
                    "params"],
                "encoder": self.encoder.init(
                    k_enc, jnp.zeros((1, fam.input_dim + fam.output_dim)))["params"]}
        else:
            d = self._input_dim + c.embedding_dim
            params = {
                "policy": self.policy.base.init(key=k_net),
                "encoder": self.encoder.init(k_enc, jnp.zeros((1, self._item_dim)))["params"],
                "value": self.value_net.init(k_value, jnp.zeros((1, d + 3)))["params"],
                "decoder": self.decoder.init(k_dec, jnp.zeros((1, self._item_dim - 1
                                                               + c.embedding_dim)))["params"]}
        return {"params": params, "opt_state": self.optimizer.init(params), "key": key,
                "iteration": jnp.array(0, jnp.int32)}

    def update(self, state):
        if self.family.kind == "regression":
            return self._update_regression(state)
        return self._update_rl(state)

    def adaptation_curve(self, state, tasks, *, key, steps):
        n = jax.tree.leaves(tasks)[0].shape[0]
        params = state["params"]
        if self.family.kind == "regression":
            fn = functools.partial(self._regression_curve, params, steps=steps)
            return {"mse": jax.vmap(fn)(tasks, jax.random.split(key, n))}
        reps = self.config.eval_trials
        tiled = jax.tree.map(lambda x: jnp.repeat(x, reps, axis=0), tasks)
        traj = self._trials(params, tiled, jax.random.split(key, n * reps), steps + 1)
        out = {"return": rollout.episode_return(traj).reshape(n, reps, steps + 1).mean(1)}
        if self.family.has_success:
            out["success"] = rollout.episode_success(traj).reshape(n, reps, steps + 1).mean(1)
        return out

    # ---- regression ------------------------------------------------------------------
    def _predict(self, params, context, mask, x):
        """Predictions at ``x [m, in]`` after inferring z from ``context`` (x, y) under
        ``mask``."""
        items = jnp.concatenate(context, axis=-1)
        z = infer_embedding(self.encoder, params["encoder"], items, mask)
        inputs = jnp.concatenate([x, jnp.broadcast_to(z, (x.shape[0], z.shape[0]))], -1)
        return self.net.apply({"params": params["net"]}, inputs)

    def _task_loss(self, params, task, key):
        """Query MSE with a random context size n ~ U{0..K}, and with the full K shots."""
        c = self.config
        k_data, k_n = jax.random.split(key)
        x, y = cast(RegressionFamily, self.family).data(k_data, task, 2 * c.shots)
        context, (xq, yq) = (x[: c.shots], y[: c.shots]), (x[c.shots:], y[c.shots:])
        n = jax.random.randint(k_n, (), 0, c.shots + 1)
        mse = lambda m: jnp.mean((self._predict(params, context, m, xq) - yq) ** 2)  # noqa: E731
        return mse((jnp.arange(c.shots) < n).astype(jnp.float32)), mse(jnp.ones(c.shots))

    def _update_regression(self, state):
        c = self.config
        key, k_tasks, k_data = jax.random.split(state["key"], 3)
        tasks = self.family.tasks("train", c.meta_batch_size, key=k_tasks)
        keys = jax.random.split(k_data, c.meta_batch_size)

        def loss_fn(params):
            loss, full = jax.vmap(functools.partial(self._task_loss, params))(tasks, keys)
            return loss.mean(), full.mean()

        (loss, full), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
        new_state = dict(state, params=optax.apply_updates(state["params"], updates),
                         opt_state=opt_state, key=key, iteration=state["iteration"] + 1)
        return new_state, {"query_mse": loss, f"query_mse_{c.shots}_shots": full,
                           "grad_norm": optax.tree.norm(grads)}

    def _regression_curve(self, params, task, key, *, steps, eval_points: int = 100):
        """MSE on ``eval_points`` fresh points after inferring z from the first 0..steps
        shots of the task."""
        k_support, k_query = jax.random.split(key)
        family = cast(RegressionFamily, self.family)
        context = family.data(k_support, task, max(steps, 1))
        xq, yq = family.data(k_query, task, eval_points)
        masks = (jnp.arange(max(steps, 1))[None] < jnp.arange(steps + 1)[:, None]).astype(
            jnp.float32)
        return jax.vmap(lambda m: jnp.mean((self._predict(params, context, m, xq) - yq) ** 2))(
            masks)

    # ---- RL: collect -----------------------------------------------------------------
    def _items(self, traj: Trajectory):
        """Encoder inputs of each step, ``(items [..., T, f], mask [..., T])``: the
        transition (s, a, r, s'); the last step of an episode has no s' and is left out."""
        next_obs = jnp.concatenate([traj.obs[..., 1:, :], traj.obs[..., -1:, :]], axis=-2)
        action = jax.vmap(lambda a: encode_action(a, self._action_space))(
            traj.action.reshape(-1, *traj.action.shape[traj.mask.ndim:]))
        action = action.reshape(*traj.mask.shape, -1)
        items = jnp.concatenate([traj.obs, action, traj.reward[..., None], next_obs], -1)
        mask = traj.mask * jnp.concatenate([traj.mask[..., 1:], jnp.zeros_like(
            traj.mask[..., -1:])], axis=-1)
        return items, mask

    def _trials(self, params, tasks, keys, episodes: int) -> Trajectory:
        """One trial of ``episodes`` episodes per task (trial ``i`` with key ``keys[i]``),
        episode k under the embedding of episodes 0..k-1: arrays ``[N, episodes, T, ...]``."""
        n = keys.shape[0]
        step_keys = jax.vmap(lambda k: jax.random.split(k, episodes))(keys)
        shared = jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), params["policy"])
        z = jnp.zeros((n, self.config.embedding_dim))
        sums, counts = jnp.zeros_like(z), jnp.zeros((n,))
        trajs = []
        for k in range(episodes):
            traj = self._sampler.episodes(self.policy, {"policy": shared, "z": z}, tasks,
                                          keys=step_keys[:, k], num=1, per_task=True)
            trajs.append(traj)
            if k + 1 < episodes:  # fold the new episode into each task's embedding
                items, mask = self._items(jax.tree.map(lambda x: x[:, 0], traj))
                sums, counts, z = self._fold(params["encoder"], items, mask, sums, counts)
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *trajs)

    @functools.partial(jax.jit, static_argnums=0)
    def _fold(self, enc_params, items, mask, sums, counts):
        """Add one episode's items to each task's running sum; the new embeddings."""
        feats = cast(jax.Array, self.encoder.apply({"params": enc_params}, items))
        sums = sums + (feats * mask[..., None]).sum(-2)
        counts = counts + mask.sum(-1)
        return sums, counts, sums / jnp.maximum(counts, 1.0)[:, None]

    # ---- RL: learn -------------------------------------------------------------------
    def _update_rl(self, state):
        c = self.config
        key, k_tasks, k_collect = jax.random.split(state["key"], 3)

        # collect: one trial per meta-train task, each episode under the embedding so far
        tasks = self.family.tasks("train", c.meta_batch_size, key=k_tasks)
        traj = self._trials(state["params"], tasks, jax.random.split(k_collect,
                                                                     c.meta_batch_size),
                            c.trial_episodes)

        # learn: PPO epochs end to end through the encoder, with the reward decoder
        return self._learn(state, key, tasks, traj)

    def _value_inputs(self, traj: Trajectory, z):
        """[s, z, time features, episode index / trial length] of every step: ``z [N, E, d]``
        broadcast over time."""
        n, e, t = traj.mask.shape
        z = jnp.broadcast_to(z[:, :, None], (n, e, t, z.shape[-1]))
        time = _time_features(traj.t, cast(Any, self.family).horizon)
        episode = jnp.broadcast_to((jnp.arange(e) / self.config.trial_episodes)[None, :, None],
                                   (n, e, t))[..., None]
        return jnp.concatenate([traj.obs, z, time, episode], -1)

    def _loss(self, params, traj: Trajectory, adv, targets):
        c = self.config
        items, mask = self._items(traj)  # [N, E, T, f]
        z = jax.vmap(functools.partial(embeddings_before_each, self.encoder,
                                       params["encoder"]))(items, mask)  # [N, E, d]
        zt = jnp.broadcast_to(z[:, :, None], (*traj.mask.shape, z.shape[-1]))
        dist = self.policy.base.apply(params["policy"], jnp.concatenate([traj.obs, zt], -1))
        logp = policies.log_prob(dist, traj.action)
        flat = lambda x: x.reshape(-1)  # noqa: E731
        m = flat(traj.mask)
        a = pg.normalize(flat(adv), m)
        policy_loss = pg.ppo_clip_loss(flat(logp), flat(traj.log_prob), a, m, clip=c.ppo_clip)
        value = self.value_net.apply({"params": params["value"]},
                                     self._value_inputs(traj, jax.lax.stop_gradient(z)))
        value_loss = pg.masked_mean((flat(cast(jax.Array, value)[..., 0]) - flat(targets)) ** 2,
                                    m)
        entropy = pg.masked_mean(flat(policies.entropy(dist)), m)
        # reward decoder: r̂(s, a, s', z_k) on the rewards of episodes k >= 1 of the trial
        without_reward = jnp.concatenate([items[..., : self._item_dim - 1 - self._input_dim],
                                          items[..., self._item_dim - self._input_dim:]], -1)
        r_hat = self.decoder.apply({"params": params["decoder"]},
                                   jnp.concatenate([without_reward, zt], -1))
        later = mask * (jnp.arange(mask.shape[1]) >= 1)[None, :, None]
        reward_loss = pg.masked_mean(flat((cast(jax.Array, r_hat)[..., 0] - traj.reward) ** 2),
                                     flat(later))
        total = (policy_loss + c.value_coef * value_loss - c.entropy_coef * entropy
                 + c.reward_coef * reward_loss)
        return total, (policy_loss, value_loss, entropy, reward_loss)

    def _learn_from_trials(self, state, key, tasks, traj: Trajectory):
        c = self.config
        params = state["params"]
        items, mask = self._items(traj)
        z = jax.vmap(functools.partial(embeddings_before_each, self.encoder,
                                       params["encoder"]))(items, mask)
        values = cast(jax.Array, self.value_net.apply(
            {"params": params["value"]}, self._value_inputs(traj, z)))[..., 0] * traj.mask
        # GAE over each whole trial, only its end terminal (as RL²): an action of episode k
        # is credited with the return of the later episodes, whose embedding its
        # transitions shape, so the first episodes pay for exploring
        n, e, t = traj.mask.shape
        trial = lambda x: x.reshape(n, e * t)  # noqa: E731
        end = jnp.zeros((n, e * t)).at[:, -1].set(1.0)
        adv = jax.vmap(functools.partial(gae, discount=c.discount, lam=c.gae_lambda))(
            trial(traj.reward), trial(values), end).reshape(n, e, t)
        targets = adv + values

        def epoch(carry, _):
            params, opt_state = carry
            (loss, aux), grads = jax.value_and_grad(self._loss, has_aux=True)(
                params, traj, adv, targets)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (
                loss, *aux, optax.tree.norm(grads))

        (params, opt_state), (loss, pol, val, ent, rew, norm) = jax.lax.scan(
            epoch, (params, state["opt_state"]), None, length=c.ppo_epochs)
        returns = rollout.episode_return(traj)  # [N, E]
        metrics = {"loss": loss.mean(), "policy_loss": pol.mean(), "value_loss": val.mean(),
                   "entropy": ent.mean(), "reward_loss": rew.mean(), "grad_norm": norm.mean(),
                   "return_episode1": returns[:, 0].mean(),
                   f"return_episode{c.trial_episodes}": returns[:, -1].mean()}
        if self.family.has_optimum:
            metrics["optimum"] = jax.vmap(self.family.optimum)(tasks).mean()
        new_state = dict(state, params=params, opt_state=opt_state, key=key,
                         iteration=state["iteration"] + 1)
        return new_state, metrics
