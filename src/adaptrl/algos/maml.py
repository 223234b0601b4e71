"""MAML: model-agnostic meta-learning (Finn, Abbeel, Levine, ICML 2017).

Meta-learn initial parameters θ such that a few gradient steps on a new task's data give
high performance:

    θ'_i = θ - α ∇_θ L_i(θ)            (inner loop: adapt, per task)
    θ   ← A(θ, ∇_θ Σ_i L_i(θ'_i))      (outer loop: meta-update through the adaptation)

For RL, L_i is the REINFORCE loss on episodes sampled with the current (adapted) policy,
and the outer update is TRPO (as in the paper), PPO-style clipping, or a vanilla policy
gradient with Adam. For regression families (sinusoid) L_i is the MSE on K shots and the
outer update is Adam, as in the paper's supervised experiments. The inner loop —
:func:`inner_step` — is the same code for both.

Experience comes from the algorithm's sampler (:mod:`adaptrl.sampling`): each collection
asks for episodes of every task under that task's current parameters. For JAX-native
families the sampler is jittable and one meta-iteration (collect, adapt, meta-update) is a
single jitted function, ``vmap``-ed over tasks; for host families (Gymnasium) the same code
runs with collection in worker processes and the adaptation and meta-update jitted.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, NamedTuple, cast

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from adaptrl import policies
from adaptrl.algos.base import Algorithm
from adaptrl.ops import baselines, pg, trpo
from adaptrl.ops.returns import gae
from adaptrl.policies import MLP
from adaptrl.sampling import rollout
from adaptrl.tasks.base import RegressionFamily


@dataclasses.dataclass(frozen=True)
class MAMLConfig:
    outer: Literal["trpo", "ppo", "vpg"] = "trpo"
    # outer (meta) update: TRPO as in the paper, PPO clipping, or vanilla PG with Adam
    meta_batch_size: int = 40
    # tasks per meta-iteration
    episodes_per_task: int = 20
    # episodes sampled per task at each adaptation step (RL)
    shots: int = 10
    # K labelled points per task for the inner and the outer loss (regression)
    inner_steps: int = 1
    # gradient steps of adaptation during meta-training
    inner_lr: float = 0.1
    # step size α of the first inner step
    inner_lr_decay: float = 1 / 3
    # step k of adaptation (k = 0, 1, ...) uses α·decay^k, in meta-training and meta-test alike.
    # With normalised advantages every policy-gradient step has about the same length, and θ is
    # meta-learned so that the first α-step lands near the task's optimum: further α-steps
    # overshoot (point-nav: −16 after one step, −207 after two). 1/3 was chosen on
    # meta-training goals (docs/results/maml_multistep_point-nav.md); 1 gives plain MAML.
    # Meta-training with one inner step never uses it
    first_order: bool = False
    # drop second-order terms (FOMAML): do not differentiate through the inner gradient
    hidden: tuple[int, ...] = (100, 100)
    # hidden widths of the policy (or regressor) MLP
    init_log_std: float = 0.0
    # initial log standard deviation of Gaussian policies
    discount: float = 0.99
    # discount γ
    gae_lambda: float = 1.0
    # λ of GAE (1.0: Monte-Carlo returns minus the baseline, as in the paper)
    baseline: Literal["linear", "learned", "none"] = "linear"
    # linear-feature baseline fit per task (paper), a learned value MLP, or none
    normalize_advantages: bool = True
    # centre and scale advantages per task and step
    max_kl: float = 0.01
    # TRPO trust region: mean KL between pre- and post-update adapted policies
    cg_iters: int = 10
    # conjugate-gradient iterations of the TRPO natural step
    cg_damping: float = 1e-5
    # damping added to the Fisher-vector product
    line_search_steps: int = 15
    # backtracking steps of the TRPO line search (ratio 0.5)
    fisher_tasks: int = 10
    # tasks (evenly spaced in the meta-batch) used to estimate the Fisher-vector products of
    # TRPO; the meta-batch size gives the full estimate (cf. TRPO's batch subsampling)
    outer_lr: float = 1e-3
    # Adam step size of the outer update (ppo, vpg, regression)
    ppo_clip: float = 0.3
    # clip range ε of the PPO outer objective
    ppo_epochs: int = 5
    # outer gradient steps per meta-iteration with PPO
    value_lr: float = 1e-3
    # Adam step size of the learned value baseline
    value_epochs: int = 10
    # value-regression steps per meta-iteration with the learned baseline
    eval_episodes: int = 20
    # episodes per task and adaptation step at meta-test time

    def __post_init__(self) -> None:
        positive = ["meta_batch_size", "episodes_per_task", "shots", "cg_iters", "fisher_tasks",
                    "ppo_epochs", "value_epochs", "eval_episodes", "line_search_steps"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0 <= self.inner_steps <= 20:
            raise ValueError("inner_steps must be between 0 and 20")
        if not self.hidden or any(w < 1 or w > 4096 for w in self.hidden):
            raise ValueError("hidden widths must be between 1 and 4096")
        if self.meta_batch_size * self.episodes_per_task > 100_000:
            raise ValueError("meta_batch_size * episodes_per_task is too large (max 100000)")
        if not 0 < self.discount <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError("discount must be in (0, 1] and gae_lambda in [0, 1]")
        if self.max_kl <= 0 or self.inner_lr < 0 or self.outer_lr <= 0:
            raise ValueError("max_kl and outer_lr must be positive, inner_lr non-negative")
        if not 0 < self.inner_lr_decay <= 1:
            raise ValueError("inner_lr_decay must be in (0, 1]")

    def step_lr(self, k: int) -> float:
        """Step size of adaptation step ``k`` (0-based): α·decay^k."""
        return self.inner_lr * self.inner_lr_decay**k


class Batch(NamedTuple):
    """Samples of one task at one adaptation step, flattened over episodes and time."""

    obs: jax.Array  # [N, obs_dim]
    action: jax.Array  # [N] or [N, action_dim]
    advantage: jax.Array  # [N]
    mask: jax.Array  # [N]
    log_prob: jax.Array  # [N] under the policy that sampled them


def inner_step(loss_fn, params, data, *, lr: float, first_order: bool):
    """One step of adaptation: θ' = θ - α ∇_θ L(θ; data). With ``first_order`` the
    gradient is a constant of θ, which drops MAML's second-order terms."""
    grads = jax.grad(loss_fn)(params, data)
    if first_order:
        grads = jax.lax.stop_gradient(grads)
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def _time_features(obs, t):
    al = (t.astype(obs.dtype) / 100.0)[..., None]
    return jnp.concatenate([obs, al, al**2], axis=-1)


# Paper settings per family (Finn et al. 2017 and the authors' code; see REFERENCES.md).
PAPER = {
    "point-nav": {"iterations": 100, "meta_batch_size": 40, "episodes_per_task": 20,
                  "inner_lr": 0.1, "hidden": (100, 100)},
    "point-nav-sparse": {"iterations": 100, "meta_batch_size": 40, "episodes_per_task": 20,
                         "inner_lr": 0.1, "hidden": (100, 100)},
    "bandit": {"iterations": 100, "meta_batch_size": 40, "episodes_per_task": 20,
               "inner_lr": 0.1, "hidden": (100, 100)},
    "sinusoid": {"iterations": 70_000, "meta_batch_size": 25, "shots": 10, "inner_lr": 0.01,
                 "outer_lr": 1e-3, "hidden": (40, 40), "first_order": False,
                 # not the paper's (plain SGD): with decay 1 a few held-out functions blow up
                 # after 5+ steps (the support loss is beyond the edge of stability, 2/α);
                 # 0.9, chosen on meta-training functions, keeps all of them bounded
                 "inner_lr_decay": 0.9},
    # locomotion (the authors' cheetah and ant setting; MAML draws fresh tasks every
    # iteration, so the PEARL-style fixed pools are off)
    **{name: {"iterations": 800, "meta_batch_size": 40, "episodes_per_task": 20,
              "inner_lr": 0.1, "hidden": (100, 100), "tasks": {"train_pool": 0}}
       for name in ("cheetah-vel", "cheetah-dir", "ant-dir", "ant-goal", "walker-params")},
}


class MAML(Algorithm):
    """Registered as ``maml-trpo``, ``maml-ppo`` and ``maml-vpg`` (the name fixes ``outer``)."""

    Config = MAMLConfig
    kinds = ("rl", "regression")
    paper_defaults = PAPER

    def __init__(self, config: MAMLConfig, family, *, sampler=None):
        super().__init__(config, family, sampler=sampler)
        c = config
        if family.kind == "regression":
            self.net = MLP(c.hidden, family.output_dim)
        else:
            self.policy = policies.policy_for(
                family.observation_space, family.action_space, hidden=c.hidden,
                init_log_std=c.init_log_std)
            self.value_net = MLP(c.hidden, 1)
        self.optimizer = optax.adam(c.outer_lr)
        self.value_optimizer = optax.adam(c.value_lr)
        # the learning phases, jitted on their own for host samplers (inlined when the whole
        # update is jitted)
        self._batches = jax.jit(self._task_batches)
        self._adapt_tasks = jax.jit(self._adapt_each_task, static_argnames=("step", "per_task"))
        self._meta_update = jax.jit(self._meta_update_rl)

    # ---- state ---------------------------------------------------------------------
    def init(self, *, key):
        k_init, k_value, key = jax.random.split(key, 3)
        if self.family.kind == "regression":
            params = self.net.init(k_init, jnp.zeros((1, self.family.input_dim)))["params"]
        else:
            params = self.policy.init(key=k_init)
        state = {"params": params, "key": key, "iteration": jnp.array(0, jnp.int32)}
        if self.config.outer != "trpo" or self.family.kind == "regression":
            state["opt_state"] = self.optimizer.init(params)
        if self.family.kind == "rl" and self.config.baseline == "learned":
            obs_dim = self.family.observation_space.shape[0]
            vparams = self.value_net.init(k_value, jnp.zeros((1, obs_dim + 2)))["params"]
            state["value"] = {"params": vparams, "opt_state": self.value_optimizer.init(vparams)}
        return state

    def update(self, state):
        if self.family.kind == "regression":
            return self._update_regression(state)
        return self._update_rl(state)

    def curve_axis(self) -> str:
        c = self.config
        each = (f"on the task's {c.shots} shots" if self.family.kind == "regression"
                else f"each on {c.eval_episodes} episodes")
        return f"{super().curve_axis()} ({each})"

    def adaptation_curve(self, state, tasks, *, key, steps):
        keys = jax.random.split(key, jax.tree.leaves(tasks)[0].shape[0])
        if self.family.kind == "regression":
            fn = functools.partial(self._regression_curve, state["params"], steps=steps)
            return {"mse": jax.vmap(fn)(tasks, keys)}
        trajs, _, _ = self._collect(state, tasks, keys, steps=steps,
                                    episodes=self.config.eval_episodes)
        out = {"return": jnp.stack([rollout.episode_return(t).mean(-1) for t in trajs], 1)}
        if self.family.has_success:
            out["success"] = jnp.stack([rollout.episode_success(t).mean(-1) for t in trajs],
                                       1)
        return out

    # ---- RL: collect and adapt ------------------------------------------------------
    def _values(self, state, traj: rollout.Trajectory):
        """Baseline values ``[E, T]`` for the episodes of one task."""
        c = self.config
        returns = jax.vmap(lambda r, d: gae(r, jnp.zeros_like(r), d, discount=c.discount,
                                            lam=1.0))(traj.reward, traj.done)
        if c.baseline == "linear":
            flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
            w = baselines.fit_linear(flat(traj.obs), flat(traj.t), flat(returns),
                                     flat(traj.mask))
            return baselines.predict_linear(w, traj.obs, traj.t), returns
        if c.baseline == "learned":
            v = cast(jax.Array, self.value_net.apply({"params": state["value"]["params"]},
                                                     _time_features(traj.obs, traj.t)))[..., 0]
            return v * traj.mask, returns
        return jnp.zeros_like(traj.reward), returns

    def _batch(self, state, traj: rollout.Trajectory) -> tuple[Batch, jax.Array]:
        """Advantages for one task's episodes, flattened to a :class:`Batch`."""
        c = self.config
        values, returns = self._values(state, traj)
        adv = jax.vmap(lambda r, v, d: gae(r, v, d, discount=c.discount, lam=c.gae_lambda))(
            traj.reward, values, traj.done)
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        mask = flat(traj.mask)
        adv = flat(adv) * mask
        if c.normalize_advantages:
            adv = pg.normalize(adv, mask)
        batch = Batch(flat(traj.obs), flat(traj.action), jax.lax.stop_gradient(adv), mask,
                      flat(traj.log_prob))
        return batch, returns

    def _inner_loss(self, params, batch: Batch):
        logp = policies.log_prob(self.policy.apply(params, batch.obs), batch.action)
        return pg.vpg_loss(logp, batch.advantage, batch.mask)

    def _adapt(self, params, batches: list[Batch], *, first_order: bool):
        """Replay adaptation on fixed inner batches (differentiable in ``params``)."""
        for k, batch in enumerate(batches):
            params = inner_step(self._inner_loss, params, batch, lr=self.config.step_lr(k),
                                first_order=first_order)
        return params

    def _task_batches(self, state, traj: rollout.Trajectory) -> Batch:
        """:meth:`_batch` of every task's episodes (``traj`` is ``[N, E, T, ...]``)."""
        return jax.vmap(lambda tr: self._batch(state, tr)[0])(traj)

    def _adapt_each_task(self, params, batch: Batch, *, step: int, per_task: bool):
        """Inner step number ``step`` on each task's batch, from shared (``per_task=False``)
        or per-task parameters; returns per-task parameters ``[N, ...]``."""
        lr = self.config.step_lr(step)
        fn = functools.partial(inner_step, self._inner_loss, lr=lr, first_order=True)
        return jax.vmap(fn, in_axes=(0 if per_task else None, 0))(params, batch)

    def _collect(self, state, tasks, keys, *, steps: int, episodes: int):
        """Sample, adapt, sample again ``steps`` times, for every task at once (task ``i``
        with key ``keys[i]``). Returns the trajectories and batches of every step (index 0 =
        before adaptation; leading axis the task) and the final adapted parameters."""
        step_keys = jax.vmap(lambda k: jax.random.split(k, steps + 1))(keys)
        params, per_task = state["params"], False
        trajs, batches = [], []
        for i in range(steps + 1):
            traj = self._sampler.episodes(self.policy, params, tasks, keys=step_keys[:, i],
                                         num=episodes, per_task=per_task)
            batch = self._batches(state, traj)
            trajs.append(traj)
            batches.append(batch)
            if i < steps:
                params = self._adapt_tasks(params, batch, step=i, per_task=per_task)
                per_task = True
        if not per_task:  # no adaptation: every task keeps the initial parameters
            params = jax.tree.map(lambda x: jnp.broadcast_to(x, (keys.shape[0], *x.shape)),
                                  params)
        return trajs, batches, params

    # ---- RL: meta-update ------------------------------------------------------------
    def _adapt_all(self, params, inner):
        """θ'_i(θ) for every task, differentiable in θ (second order unless configured)."""
        return jax.vmap(lambda b: self._adapt(params, b, first_order=self.config.first_order))(
            inner)

    def _outer_loss(self, adapted, post: Batch):
        """Mean over tasks of the outer objective on post-adaptation samples."""
        c = self.config
        logp = jax.vmap(lambda a, b: policies.log_prob(self.policy.apply(a, b.obs), b.action))(
            adapted, post)
        if c.outer == "ppo":
            loss = jax.vmap(functools.partial(pg.ppo_clip_loss, clip=c.ppo_clip))(
                logp, post.log_prob, post.advantage, post.mask)
        elif c.outer == "vpg":
            loss = jax.vmap(pg.vpg_loss)(logp, post.advantage, post.mask)
        else:
            loss = jax.vmap(pg.surrogate_loss)(logp, post.log_prob, post.advantage, post.mask)
        return loss.mean()

    def _mean_kl(self, adapted, post: Batch, old_dist):
        """Mean over tasks and samples of KL(π_old || π_θ'_i)."""
        kl = jax.vmap(lambda a, b, o: pg.masked_mean(
            policies.kl(o, self.policy.apply(a, b.obs)), b.mask))(adapted, post, old_dist)
        return kl.mean()

    def _losses(self, params, inner, post, old_dist):
        adapted = self._adapt_all(params, inner)
        return self._outer_loss(adapted, post), self._mean_kl(adapted, post, old_dist)

    def fisher_vp(self, params, inner, post: Batch, old_dist):
        """The Fisher-vector product of the meta-objective's KL constraint, on flat vectors.

        At the current θ the KL between old and new adapted policies has zero gradient in
        θ', so its Hessian in θ is exactly the Gauss-Newton product Σ_i J_iᵀ H'_i J_i with
        J_i = ∂θ'_i/∂θ and H'_i the KL Hessian in θ'_i. We linearise the adaptation once
        (``jax.linearize``, and its transpose for Jᵀ) and reuse it in every conjugate-gradient
        iteration instead of differentiating the KL through the inner gradient each time.
        Only ``fisher_tasks`` evenly spaced tasks enter the estimate.
        """
        n = jax.tree.leaves(post)[0].shape[0]
        idx = jnp.linspace(0, n - 1, min(self.config.fisher_tasks, n)).round().astype(jnp.int32)
        inner, post, old_dist = jax.tree.map(lambda x: x[idx], (inner, post, old_dist))
        _, unravel = ravel_pytree(params)
        adapted, jvp = jax.linearize(lambda p: self._adapt_all(p, inner), params)
        vjp = jax.linear_transpose(jvp, params)
        _, kl_hvp = jax.linearize(jax.grad(lambda a: self._mean_kl(a, post, old_dist)), adapted)

        def product(v):
            (out,) = vjp(kl_hvp(jvp(unravel(v))))
            return ravel_pytree(out)[0]

        return product

    def _trpo(self, params, inner, post: Batch, old_dist):
        """One TRPO step on the meta-parameters: natural gradient + line search."""
        c = self.config
        flat, unravel = ravel_pytree(params)
        loss_before, grad = jax.value_and_grad(
            lambda p: self._outer_loss(self._adapt_all(p, inner), post))(params)
        step, _ = trpo.natural_step(-ravel_pytree(grad)[0],
                                    self.fisher_vp(params, inner, post, old_dist),
                                    max_kl=c.max_kl, iters=c.cg_iters, damping=c.cg_damping)
        new_flat, accepted, loss_after, kl = trpo.backtracking_line_search(
            lambda x: self._losses(unravel(x), inner, post, old_dist), flat, step,
            max_kl=c.max_kl, max_backtracks=c.line_search_steps)
        return unravel(new_flat), {
            "outer_loss_before": loss_before, "outer_loss_after": loss_after, "kl": kl,
            "line_search_accepted": accepted.astype(jnp.float32),
            "grad_norm": optax.tree.norm(grad)}

    def _adam(self, params, opt_state, inner, post, old_dist):
        """PPO (several epochs on the clipped objective) or VPG (one step), with Adam."""
        c = self.config

        def epoch(carry, _):
            params, opt_state = carry
            (loss, kl), grads = jax.value_and_grad(self._losses, has_aux=True)(
                params, inner, post, old_dist)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (
                loss, kl, optax.tree.norm(grads))

        epochs = c.ppo_epochs if c.outer == "ppo" else 1
        (params, opt_state), (losses, kls, norms) = jax.lax.scan(
            epoch, (params, opt_state), None, length=epochs)
        return params, opt_state, {"outer_loss_before": losses[0], "kl": kls[-1],
                                   "grad_norm": norms.mean()}

    def _update_rl(self, state):
        c = self.config
        key, k_tasks, k_collect = jax.random.split(state["key"], 3)
        tasks = self.family.tasks("train", c.meta_batch_size, key=k_tasks)
        keys = jax.random.split(k_collect, c.meta_batch_size)

        # collect: pre-adaptation episodes, adapt, post-adaptation episodes (every task)
        trajs, batches, adapted = self._collect(state, tasks, keys, steps=c.inner_steps,
                                                episodes=c.episodes_per_task)

        # meta-update through the adaptation
        return self._meta_update(state, key, tasks, trajs, batches, adapted)

    def _meta_update_rl(self, state, key, tasks, trajs, batches, adapted):
        c = self.config
        inner, post = batches[:-1], batches[-1]
        old_dist = jax.lax.stop_gradient(jax.vmap(self.policy.apply)(adapted, post.obs))
        new_state = dict(state, key=key, iteration=state["iteration"] + 1)
        if c.outer == "trpo":
            new_state["params"], metrics = self._trpo(state["params"], inner, post, old_dist)
        else:
            new_state["params"], new_state["opt_state"], metrics = self._adam(
                state["params"], state["opt_state"], inner, post, old_dist)
        if c.baseline == "learned":
            new_state["value"] = self._fit_value(state["value"], trajs)

        for i, traj in enumerate(trajs):
            metrics[f"return_step{i}"] = rollout.episode_return(traj).mean()
        if self.family.has_optimum:
            metrics["optimum"] = jax.vmap(self.family.optimum)(tasks).mean()
        if self.family.has_success:
            metrics[f"success_step{c.inner_steps}"] = rollout.episode_success(trajs[-1]).mean()
        return new_state, metrics

    def _fit_value(self, value_state, trajs):
        """Regress the value MLP on the discounted returns of all collected episodes."""
        c = self.config
        traj = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *trajs)
        returns = jax.vmap(jax.vmap(lambda r, d: gae(r, jnp.zeros_like(r), d,
                                                     discount=c.discount, lam=1.0)))(
            traj.reward, traj.done)
        x = _time_features(traj.obs, traj.t)

        def loss(vparams):
            v = self.value_net.apply({"params": vparams}, x)[..., 0]
            return pg.masked_mean((v - returns) ** 2, traj.mask)

        def epoch(carry, _):
            vparams, opt_state = carry
            grads = jax.grad(loss)(vparams)
            updates, opt_state = self.value_optimizer.update(grads, opt_state, vparams)
            return (optax.apply_updates(vparams, updates), opt_state), None

        (vparams, opt_state), _ = jax.lax.scan(
            epoch, (value_state["params"], value_state["opt_state"]), None,
            length=c.value_epochs)
        return {"params": vparams, "opt_state": opt_state}

    # ---- regression -----------------------------------------------------------------
    def _mse(self, params, data):
        x, y = data
        return jnp.mean((self.net.apply({"params": params}, x) - y) ** 2)

    def _task_loss(self, params, task, key):
        c = self.config
        family = cast(RegressionFamily, self.family)
        x, y = family.data(key, task, 2 * c.shots)
        support, query = (x[: c.shots], y[: c.shots]), (x[c.shots:], y[c.shots:])
        for k in range(c.inner_steps):
            params = inner_step(self._mse, params, support, lr=c.step_lr(k),
                                first_order=c.first_order)
        return self._mse(params, query)

    def _update_regression(self, state):
        c = self.config
        key, k_tasks, k_data = jax.random.split(state["key"], 3)
        tasks = self.family.tasks("train", c.meta_batch_size, key=k_tasks)
        keys = jax.random.split(k_data, c.meta_batch_size)

        def meta_loss(params):
            return jax.vmap(functools.partial(self._task_loss, params))(tasks, keys).mean()

        loss, grads = jax.value_and_grad(meta_loss)(state["params"])
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
        new_state = dict(state, params=optax.apply_updates(state["params"], updates),
                         opt_state=opt_state, key=key, iteration=state["iteration"] + 1)
        return new_state, {"query_mse_after_adaptation": loss,
                           "grad_norm": optax.tree.norm(grads)}

    def _regression_curve(self, params, task, key, *, steps, eval_points: int = 100):
        c = self.config
        k_support, k_query = jax.random.split(key)
        family = cast(RegressionFamily, self.family)
        support = family.data(k_support, task, c.shots)
        query = family.data(k_query, task, eval_points)
        mses = [self._mse(params, query)]
        for k in range(steps):
            params = inner_step(self._mse, params, support, lr=c.step_lr(k), first_order=True)
            mses.append(self._mse(params, query))
        return jnp.stack(mses)

