"""PEARL: probabilistic embeddings for actor-critic RL (Rakelly, Zhou, Quillen, Finn,
Levine, ICML 2019).

An off-policy meta-learner. A task is summarised by a latent context ``z``; its posterior
given transitions ``c = {(s, a, r)}`` is the permutation-invariant product of Gaussian
factors, one per transition, from an encoder network (eq. 3,
:func:`adaptrl.ops.sac.product_of_gaussians`). A soft actor-critic (SAC, V-function
version) conditioned on ``z`` learns from per-task replay buffers; the encoder learns
only through the critics' Bellman error plus the KL information bottleneck
``λ KL(q(z|c) || N(0, I))``. Context for the encoder and batches for the actor-critic are
sampled separately: the context from a per-task *encoder buffer* holding only recent
data collected with ``z`` from the prior, the RL batch from everything collected.

One meta-iteration, as in the authors' code (``katerakelly/oyster``, ``rl_algorithm.py``):

1. first iteration only: ``initial_episodes`` episodes of every training task (``z`` from
   the prior, redrawn each episode) into both buffers;
2. for ``tasks_per_iteration`` training tasks: clear the task's encoder buffer, collect
   ``prior_episodes`` episodes with ``z ~ N(0, I)`` into both buffers, then
   ``posterior_episodes`` with ``z ~ q(z | c)``, ``c`` drawn from the encoder buffer, into
   the RL buffer only;
3. ``train_steps`` gradient steps, each on ``meta_batch`` training tasks: context from the
   encoder buffer, an RL batch from the RL buffer.

Meta-test (**posterior sampling**): on a held-out task the first episode acts with
``z ~ N(0, I)``; after each episode, ``z`` is redrawn from the posterior given every
transition seen so far. The adaptation curve is the return of episode ``k`` after ``k``
episodes of context (``curve_unit = "episodes"``).

The tasks are a fixed training pool (``tasks.train_pool``, :meth:`TaskFamily.pool`). The
replay buffers (:mod:`adaptrl.sampling.replay`) are fixed-size arrays in the training
state, so every checkpoint holds them and a resumed run is exact. Collection goes through
the sampler: jitted (inside the jitted iteration) for JAX-native families, worker
processes for host families; the gradient steps are one jitted ``lax.scan`` either way.

Differences from the authors' code: the ``tasks_per_iteration`` tasks of an iteration are
distinct (the authors draw with replacement); collection is in whole episodes
(``prior_episodes=2`` is their 400 steps at horizon 200); the last step of an episode that
runs to its horizon is not stored (no sampler returns its next observation); one Adam
over all networks with the Q, V and policy losses taken at the same parameters (the authors
step the critics first; every step size is theirs, 3e-4); buffers hold ``buffer_size``
transitions per task (theirs 10⁶, never filled in 500 iterations).
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
from adaptrl.errors import UserError
from adaptrl.ops import sac
from adaptrl.policies import MLP
from adaptrl.sampling import replay, rollout
from adaptrl.sampling.replay import Buffer, Transitions
from adaptrl.tasks.base import indexed_keys

#: episodes collected per host-sampler call (bounds the environments and tiled policy
#: parameters one call holds; the initial collection of every pool task is split)
HOST_CHUNK = 100


@dataclasses.dataclass(frozen=True)
class PEARLConfig:
    latent_dim: int = 5
    # dimensions of the latent context z
    hidden: tuple[int, ...] = (300, 300, 300)
    # hidden widths of the policy, the two Q networks and the V network
    encoder_hidden: tuple[int, ...] = (200, 200, 200)
    # hidden widths of the context encoder (each transition -> a Gaussian factor)
    tasks_per_iteration: int = 5
    # training tasks collected from per iteration (distinct)
    initial_episodes: int = 10
    # episodes of every training task collected before the first gradient step (z ~ prior)
    prior_episodes: int = 2
    # episodes per collected task with z ~ prior, stored in both buffers
    posterior_episodes: int = 2
    # episodes per collected task with z ~ q(z|c), stored in the RL buffer only
    train_steps: int = 2000
    # gradient steps per iteration
    meta_batch: int = 16
    # training tasks per gradient step
    batch_size: int = 256
    # RL transitions per task and gradient step
    context_batch: int = 64
    # context transitions per task and gradient step (from the encoder buffer)
    buffer_size: int = 40_000
    # RL-buffer capacity per task, in transitions (the oldest are overwritten)
    lr: float = 3e-4
    # Adam step size of every network
    discount: float = 0.99
    # discount γ
    tau: float = 0.005
    # Polyak rate of the target V network
    reward_scale: float = 5.0
    # rewards are multiplied by this in the Bellman target (the inverse SAC temperature)
    kl_lambda: float = 0.1
    # weight λ of the KL bottleneck (summed over the meta-batch's tasks)
    information_bottleneck: bool = True
    # probabilistic z (product of Gaussians, KL); False: z is the mean of the factors' means
    next_obs_in_context: bool = False
    # context transitions also carry s' (the authors' walker-params setting)
    policy_mean_reg: float = 1e-3
    # weight of the penalty on the policy's pre-squash mean
    policy_std_reg: float = 1e-3
    # weight of the penalty on the policy's log standard deviation
    eval_greedy: bool = True
    # at meta-test act with tanh(mean) (the authors' deterministic evaluation)

    def __post_init__(self) -> None:
        for name in ("latent_dim", "tasks_per_iteration", "initial_episodes", "prior_episodes",
                     "train_steps", "meta_batch", "batch_size", "context_batch",
                     "buffer_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.posterior_episodes < 0:
            raise ValueError("posterior_episodes must be >= 0")
        for widths in (self.hidden, self.encoder_hidden):
            if not widths or any(w < 1 or w > 4096 for w in widths):
                raise ValueError("hidden widths must be between 1 and 4096")
        if self.latent_dim > 256 or self.batch_size * self.meta_batch > 1_000_000:
            raise ValueError("latent_dim must be <= 256 and batch_size * meta_batch <= 1e6")
        if self.lr <= 0 or self.reward_scale <= 0 or self.kl_lambda < 0:
            raise ValueError("lr and reward_scale must be positive, kl_lambda non-negative")
        if not 0 < self.discount <= 1 or not 0 < self.tau <= 1:
            raise ValueError("discount and tau must be in (0, 1]")


# The authors' settings (configs/default.py and configs/ENV.json of katerakelly/oyster):
# 500 iterations, 5 tasks collected per iteration, 400 prior + 600 posterior steps (2 + 3
# episodes of 200), 2000 initial steps (10 episodes) per task, reward scale 5, latent 5.
# point-nav is MAML's family, not the authors' point robot: these are our settings
# (docs/results/pearl_point_nav.md): 40 training goals, 20-step episodes, the authors'
# reward scale of their point robot (100), small networks and 50 gradient steps per iteration.
_LOCOMOTION = {"iterations": 500, "initial_episodes": 10, "prior_episodes": 2,
               "posterior_episodes": 3}
PAPER: dict[str, dict[str, Any]] = {
    "cheetah-vel": {**_LOCOMOTION, "train_steps": 2000, "meta_batch": 16,
                    "context_batch": 100, "tasks": {"train_pool": 100}},
    "ant-goal": {**_LOCOMOTION, "train_steps": 4000, "meta_batch": 10, "context_batch": 256,
                 "kl_lambda": 1.0, "tasks": {"train_pool": 150}},
    "walker-params": {**_LOCOMOTION, "train_steps": 4000, "meta_batch": 10,
                      "context_batch": 100, "next_obs_in_context": True,
                      "tasks": {"train_pool": 40}},
    "point-nav": {"iterations": 60, "hidden": (32, 32), "encoder_hidden": (32,),
                  "latent_dim": 2, "initial_episodes": 2, "prior_episodes": 1,
                  "posterior_episodes": 1, "train_steps": 50, "meta_batch": 8,
                  "batch_size": 64, "context_batch": 32, "buffer_size": 400, "lr": 3e-3,
                  "reward_scale": 100.0, "tasks": {"train_pool": 40, "horizon": 20}},
}


@dataclasses.dataclass(frozen=True)
class ContextPolicy:
    """The SAC actor ``π(a | s, z)`` as a sampler policy: ``apply(params, obs)`` with
    ``params = {"policy": actor weights, "z": z [latent_dim]}`` gives a tanh-Gaussian.
    ``greedy`` collapses its spread, so sampling gives ``tanh(mean)`` (meta-test)."""

    hidden: tuple[int, ...]
    action_dim: int
    greedy: bool = False

    @property
    def net(self) -> MLP:
        return MLP(self.hidden, 2 * self.action_dim)

    def head(self, params, obs: jax.Array, z: jax.Array):
        """Pre-squash mean and clamped log-std ``[..., action_dim]`` of ``π(·|s, z)``."""
        out = cast(jax.Array, self.net.apply({"params": params}, jnp.concatenate([obs, z], -1)))
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, sac.LOG_STD_MIN, sac.LOG_STD_MAX)

    def apply(self, params, obs: jax.Array) -> policies.TanhGaussian:
        z = jnp.broadcast_to(params["z"], (*obs.shape[:-1], params["z"].shape[-1]))
        mean, log_std = self.head(params["policy"], obs, z)
        if self.greedy:
            log_std = jnp.full_like(log_std, sac.LOG_STD_MIN)
        return policies.TanhGaussian(mean, log_std)


def _scalar(net: MLP, params, *inputs: jax.Array) -> jax.Array:
    """A Q or V network's output ``[B]`` on the concatenated inputs ``[B, ...]``."""
    return cast(jax.Array, net.apply({"params": params}, jnp.concatenate(inputs, -1)))[:, 0]


def _train_step(algo: PEARL, carry, key):
    """One gradient step of every network on ``meta_batch`` training tasks."""
    params, target_v, opt_state, rl, enc = carry
    (loss, aux), grads = jax.value_and_grad(algo.loss, has_aux=True)(
        params, target_v, rl, enc, key)
    updates, opt_state = algo.optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    target_v = sac.soft_update(target_v, params["v"], algo.config.tau)
    return (params, target_v, opt_state, rl, enc), {**aux, "loss": loss,
                                                      "grad_norm": optax.tree.norm(grads)}


class PEARL(Algorithm):
    """Registered as ``pearl``."""

    Config = PEARLConfig
    kinds = ("rl",)
    curve_unit = "episodes"
    paper_defaults = PAPER
    default_iterations = 500

    def __init__(self, config: PEARLConfig, family, *, sampler=None):
        self.check_new_run(config, family)
        super().__init__(config, family, sampler=sampler)
        c = config
        self.obs_dim = gym.spaces.flatdim(family.observation_space)
        self.action_dim = int(family.action_space.shape[0])
        self.context_dim = self.obs_dim * (1 + c.next_obs_in_context) + self.action_dim + 1
        self.encoder = MLP(c.encoder_hidden, 2 * c.latent_dim if c.information_bottleneck
                           else c.latent_dim)
        self.actor = ContextPolicy(c.hidden, self.action_dim)
        self.q_net, self.v_net = MLP(c.hidden, 1), MLP(c.hidden, 1)
        self.optimizer = optax.adam(c.lr)
        self.pool = family.pool()
        self.enc_capacity = max(c.initial_episodes, c.prior_episodes) * family.horizon
        # phases jitted on their own for host samplers (inlined when the update is jitted)
        self._store = jax.jit(self._store_episodes, static_argnames=("encoder",))
        self._posterior_z = jax.jit(self._sample_posterior_z, static_argnums=(3,))
        self._learn = jax.jit(self._learn_from_buffers)
        self._infer = jax.jit(self._infer_from_episodes)

    @classmethod
    def check_new_run(cls, config: PEARLConfig, family) -> None:
        if family.kind != "rl":
            return  # the base class refuses it
        space = family.action_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise UserError(f"pearl needs a continuous (Box) action space, not {space}")
        if not family.train_pool:
            raise UserError("pearl learns from a fixed pool of training tasks: set "
                            "--set tasks.train_pool=N (e.g. 100)")
        c = config
        most = max(c.initial_episodes, c.prior_episodes, c.posterior_episodes) * family.horizon
        if c.buffer_size < most:
            raise UserError(f"pearl: algo.buffer_size={c.buffer_size} is below the {most} "
                            "transitions that one collection adds to a task")
        if c.tasks_per_iteration > family.train_pool:
            raise UserError(f"pearl: algo.tasks_per_iteration={c.tasks_per_iteration} is "
                            f"more than the {family.train_pool} training tasks")

    @property
    def default_eval_steps(self) -> int:
        return 2  # the authors' 600 evaluation steps: 3 episodes of 200

    # ---- state -----------------------------------------------------------------------
    def init(self, *, key):
        c = self.config
        k_enc, k_pi, k_q1, k_q2, k_v, key = jax.random.split(key, 6)
        sa = jnp.zeros((1, self.obs_dim + self.action_dim + c.latent_dim))
        s = jnp.zeros((1, self.obs_dim + c.latent_dim))
        params = {
            "encoder": self.encoder.init(k_enc, jnp.zeros((1, self.context_dim)))["params"],
            "policy": self.actor.net.init(k_pi, s)["params"],
            "q1": self.q_net.init(k_q1, sa)["params"],
            "q2": self.q_net.init(k_q2, sa)["params"],
            "v": self.v_net.init(k_v, s)["params"],
        }
        pool = self.family.train_pool
        return {
            "params": params, "target_v": params["v"], "opt_state": self.optimizer.init(params),
            "rl": replay.empty(pool, c.buffer_size, self.obs_dim, self.action_dim),
            "enc": replay.empty(pool, self.enc_capacity, self.obs_dim, self.action_dim),
            "env_steps": jnp.array(0, jnp.int32), "key": key,
            "iteration": jnp.array(0, jnp.int32),
        }

    # ---- the context posterior ---------------------------------------------------------
    def context(self, tr: Transitions) -> jax.Array:
        """The encoder's input per transition ``[..., context_dim]``: (s, a, r[, s'])."""
        parts = [tr.obs, tr.action, tr.reward[..., None]]
        if self.config.next_obs_in_context:
            parts.append(tr.next_obs)
        return jnp.concatenate(parts, -1)

    def posterior(self, enc_params, context: jax.Array, mask: jax.Array | None = None):
        """q(z | c) of one task's context ``[n, context_dim]`` (transitions with
        ``mask = 1``): ``(mean [d], var [d])``; without the bottleneck the mean of the
        factors' means and a zero variance."""
        out = cast(jax.Array, self.encoder.apply({"params": enc_params}, context))
        if not self.config.information_bottleneck:
            w = jnp.ones(out.shape[:1]) if mask is None else mask
            mean = jnp.sum(w[:, None] * out, 0) / jnp.maximum(w.sum(), 1.0)
            return mean, jnp.zeros_like(mean)
        mean, raw = jnp.split(out, 2, axis=-1)
        return sac.product_of_gaussians(mean, jax.nn.softplus(raw), mask)

    @staticmethod
    def draw(mean: jax.Array, var: jax.Array, key: jax.Array) -> jax.Array:
        """A reparameterised sample ``z = mean + sqrt(var) ε``."""
        return mean + jnp.sqrt(var) * jax.random.normal(key, mean.shape)

    # ---- SAC with the KL bottleneck ----------------------------------------------------
    def loss(self, params, target_v, rl: Buffer, enc: Buffer, key):
        """Critic, value, policy and encoder losses on one meta-batch (their gradients
        reach only their own networks; the encoder learns from the Q loss and the KL)."""
        c = self.config
        k_idx, k_rl, k_ctx, k_z, k_pi = jax.random.split(key, 5)
        idx = jax.random.randint(k_idx, (c.meta_batch,), 0, self.family.train_pool)
        batch = jax.vmap(lambda i, k: replay.sample(rl, i, c.batch_size, key=k))(
            idx, jax.random.split(k_rl, c.meta_batch))
        ctx = jax.vmap(lambda i, k: replay.sample(enc, i, c.context_batch, key=k))(
            idx, jax.random.split(k_ctx, c.meta_batch))
        mean, var = jax.vmap(lambda x: self.posterior(params["encoder"], x))(self.context(ctx))
        z = jax.vmap(self.draw)(mean, var, jax.random.split(k_z, c.meta_batch))
        kl = (jnp.sum(sac.kl_to_standard_normal(mean, var)) if c.information_bottleneck
              else jnp.zeros(()))

        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        obs, act, next_obs = flat(batch.obs), flat(batch.action), flat(batch.next_obs)
        zb = flat(jnp.broadcast_to(z[:, None], (c.meta_batch, c.batch_size, c.latent_dim)))
        z_fixed = jax.lax.stop_gradient(zb)
        q = lambda p, a, zz: _scalar(self.q_net, p, obs, a, zz)  # noqa: E731
        v = lambda p, o, zz: _scalar(self.v_net, p, o, zz)  # noqa: E731

        # critics (and, through z, the encoder): the soft Bellman error
        target = sac.q_target(flat(batch.reward), flat(batch.terminal),
                              v(target_v, next_obs, z_fixed), discount=c.discount,
                              reward_scale=c.reward_scale)
        q_loss = sac.q_loss(q(params["q1"], act, zb), q(params["q2"], act, zb), target)
        # actor: reparameterised actions, critics held fixed; value: onto min Q - log π
        pi_mean, pi_log_std = self.actor.head(params["policy"], obs, z_fixed)
        u = pi_mean + jnp.exp(pi_log_std) * jax.random.normal(k_pi, pi_mean.shape)
        log_pi = sac.tanh_gaussian_log_prob(u, pi_mean, pi_log_std)
        fixed = jax.lax.stop_gradient((params["q1"], params["q2"]))
        min_q = jnp.minimum(q(fixed[0], jnp.tanh(u), z_fixed), q(fixed[1], jnp.tanh(u), z_fixed))
        v_loss = sac.v_loss(v(params["v"], obs, z_fixed), min_q, log_pi)
        pi_loss = sac.policy_loss(log_pi, min_q, pi_mean, pi_log_std,
                                  mean_reg=c.policy_mean_reg, std_reg=c.policy_std_reg)
        total = q_loss + c.kl_lambda * kl + v_loss + pi_loss
        return total, {"q_loss": q_loss, "v_loss": v_loss, "policy_loss": pi_loss, "kl": kl,
                       "z_var": var.mean(), "log_pi": log_pi.mean(), "q": min_q.mean()}

    def _learn_from_buffers(self, state, key):
        carry = (state["params"], state["target_v"], state["opt_state"], state["rl"],
                 state["enc"])
        (params, target_v, opt_state, _, _), aux = jax.lax.scan(
            functools.partial(_train_step, self), carry,
            jax.random.split(key, self.config.train_steps))
        metrics = {k: v.mean() for k, v in aux.items()}
        return dict(state, params=params, target_v=target_v, opt_state=opt_state), metrics

    # ---- collect -----------------------------------------------------------------------
    def _episodes(self, policy_params, tasks, z, key, *, greedy: bool = False):
        """One episode per row of ``tasks [N]`` with latent ``z [N, d]``:
        :class:`~adaptrl.sampling.rollout.Trajectory` ``[N, 1, T, ...]``. A host sampler
        gets at most ``HOST_CHUNK`` episodes per call."""
        n = z.shape[0]
        keys = indexed_keys(key, n)  # chunking changes nothing
        actor = dataclasses.replace(self.actor, greedy=greedy)
        chunk = n if self.jittable else HOST_CHUNK
        parts = []
        for start in range(0, n, chunk):
            sl = slice(start, start + chunk)
            m = z[sl].shape[0]
            tiled = jax.tree.map(lambda x, m=m: jnp.broadcast_to(x, (m, *x.shape)),
                                 policy_params)
            parts.append(self._sampler.episodes(
                actor, {"policy": tiled, "z": z[sl]}, jax.tree.map(lambda x, sl=sl: x[sl], tasks),
                keys=keys[sl], num=1, per_task=True))
        return parts[0] if len(parts) == 1 else jax.tree.map(
            lambda *xs: jnp.concatenate(xs), *parts)

    def _store_episodes(self, state, idx, traj: rollout.Trajectory, *, encoder: bool):
        """Store the episodes ``[n * E, 1, T]`` of the pool tasks ``idx [n]`` (E each, in
        task order) in the RL buffer, and with ``encoder`` in the encoder buffer too."""
        n = idx.shape[0]
        per_task = jax.tree.map(lambda x: x.reshape(n, -1, *x.shape[2:]), traj)
        data, keep = jax.vmap(replay.from_episodes)(per_task)
        new = dict(state, rl=replay.add(state["rl"], idx, data, keep),
                   env_steps=state["env_steps"] + traj.mask.sum().astype(jnp.int32))
        if encoder:
            new["enc"] = replay.add(state["enc"], idx, data, keep)
        return new

    def _collect_prior(self, state, idx, episodes: int, key, *, clear: bool):
        """``episodes`` episodes of each pool task ``idx [n]``, ``z ~ N(0, I)`` redrawn each
        episode, into both buffers (the encoder buffer of those tasks cleared first)."""
        k_z, k_run = jax.random.split(key)
        n = idx.shape[0] * episodes
        tasks = jax.tree.map(lambda x: jnp.repeat(x[idx], episodes, axis=0), self.pool)
        z = jax.random.normal(k_z, (n, self.config.latent_dim))
        traj = self._episodes(state["params"]["policy"], tasks, z, k_run)
        if clear:
            state = dict(state, enc=replay.clear(state["enc"], idx))
        return self._store(state, idx, traj, encoder=True), traj

    def _sample_posterior_z(self, state, idx, key, episodes: int):
        """For each of ``episodes`` episodes of each task ``idx [n]``: ``z ~ q(z | c)``, ``c``
        a fresh ``context_batch`` draw from the task's encoder buffer: ``[n * episodes, d]``."""
        rows = jnp.repeat(idx, episodes)
        keys = jax.random.split(key, 2 * rows.shape[0]).reshape(2, rows.shape[0], -1)

        def one(i, k_ctx, k_z):
            ctx = replay.sample(state["enc"], i, self.config.context_batch, key=k_ctx)
            return self.draw(*self.posterior(state["params"]["encoder"], self.context(ctx)),
                             k_z)

        return jax.vmap(one)(rows, keys[0], keys[1])

    def _collect_initial(self, state, key):
        idx = jnp.arange(self.family.train_pool)
        return self._collect_prior(state, idx, self.config.initial_episodes, key,
                                   clear=False)[0]

    # ---- one iteration -----------------------------------------------------------------
    def update(self, state):
        c = self.config
        key, k_init, k_tasks, k_prior, k_z, k_post, k_train = jax.random.split(state["key"], 7)
        state = dict(state, key=key)

        # collect: first the initial data of every training task ...
        if self.jittable:
            state = jax.lax.cond(state["iteration"] == 0,
                                 lambda s: self._collect_initial(s, k_init), lambda s: s, state)
        elif int(state["iteration"]) == 0:
            state = self._collect_initial(state, k_init)
        # ... then, for a few tasks, episodes with z from the prior (both buffers) ...
        idx = jax.random.choice(k_tasks, self.family.train_pool, (c.tasks_per_iteration,),
                                replace=False)
        state, prior = self._collect_prior(state, idx, c.prior_episodes, k_prior, clear=True)
        metrics = {"return_prior": rollout.episode_return(prior).mean()}
        # ... and with z from the posterior given encoder-buffer context (RL buffer only)
        if c.posterior_episodes:
            z = self._posterior_z(state, idx, k_z, c.posterior_episodes)
            tasks = jax.tree.map(lambda x: jnp.repeat(x[idx], c.posterior_episodes, axis=0),
                                 self.pool)
            post = self._episodes(state["params"]["policy"], tasks, z, k_post)
            state = self._store(state, idx, post, encoder=False)
            metrics["return_posterior"] = rollout.episode_return(post).mean()

        # learn: train_steps gradient steps of SAC and the encoder
        state, learned = self._learn(state, k_train)
        metrics.update(learned, env_steps=state["env_steps"].astype(jnp.float32))
        return dict(state, iteration=state["iteration"] + 1), metrics

    # ---- meta-test -----------------------------------------------------------------------
    def _infer_from_episodes(self, params, traj: rollout.Trajectory, key):
        """``z ~ q(z | c)`` per task from all real steps of its episodes ``[n, k, T]``."""
        tr, keep = jax.vmap(replay.from_episodes)(traj)  # s' is known where kept
        mask = (keep if self.config.next_obs_in_context
                else traj.mask.reshape(keep.shape)).astype(jnp.float32)
        mean, var = jax.vmap(lambda x, m: self.posterior(params["encoder"], x, m))(
            self.context(tr), mask)
        return jax.vmap(self.draw)(mean, var, jax.random.split(key, mean.shape[0]))

    def adaptation_curve(self, state, tasks, *, key, steps):
        """Return (and success) of episode ``k = 0..steps`` on each task, acting with ``z``
        from the prior (``k = 0``) or from the posterior given episodes ``0..k-1``:
        ``{"return": [num_tasks, steps + 1]}``."""
        n = jax.tree.leaves(tasks)[0].shape[0]
        params = state["params"]
        k_prior, key = jax.random.split(key)
        z = jax.random.normal(k_prior, (n, self.config.latent_dim))
        seen: list[rollout.Trajectory] = []
        for k in range(steps + 1):
            k_run, k_z, key = jax.random.split(jax.random.fold_in(key, k), 3)
            if seen:
                z = self._infer(params, jax.tree.map(lambda *xs: jnp.concatenate(xs, 1),
                                                     *seen), k_z)
            seen.append(self._episodes(params["policy"], tasks, z, k_run,
                                       greedy=self.config.eval_greedy))
        out = {"return": jnp.stack([rollout.episode_return(t)[:, 0] for t in seen], 1)}
        if self.family.has_success:
            out["success"] = jnp.stack([rollout.episode_success(t)[:, 0] for t in seen], 1)
        return out
