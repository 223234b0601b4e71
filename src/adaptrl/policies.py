"""Policy networks f_θ and their action distributions π_θ(a|s).

A policy is a frozen dataclass holding its architecture; its parameters are a plain pytree
(so MAML can adapt them functionally). ``policy.apply(params, obs)`` returns a
distribution — :class:`Gaussian` for continuous actions (state-independent learned
log-std, as in the MAML and TRPO papers), :class:`Categorical` (softmax over f_θ(s, a))
for discrete actions. The module-level functions act on either distribution.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, cast

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp

from adaptrl.errors import UserError
from adaptrl.ops.sac import tanh_gaussian_log_prob


class MLP(nn.Module):
    """A ReLU multilayer perceptron with a linear output layer."""

    hidden: tuple[int, ...]
    out: int

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


class Gaussian(NamedTuple):
    mean: jax.Array  # [..., d]
    log_std: jax.Array  # [..., d] (broadcast)


class Categorical(NamedTuple):
    logits: jax.Array  # [..., k]


class TanhGaussian(NamedTuple):
    """``a = tanh(u)``, ``u ~ N(mean, exp(log_std)²)``: SAC's squashed policy (PEARL)."""

    mean: jax.Array  # [..., d] of the pre-squash Gaussian
    log_std: jax.Array  # [..., d]


Distribution = Gaussian | Categorical


def distribution(discrete: bool, out: jax.Array, params) -> Distribution:
    """The action distribution of a network output ``out [..., action_dim]``: categorical
    logits, or the mean of a Gaussian with the learned ``params["log_std"]``."""
    if discrete:
        return Categorical(out)
    return Gaussian(out, jnp.broadcast_to(params["log_std"], out.shape))


def _with_log_std(net_params, discrete: bool, action_dim: int, init_log_std: float):
    """A policy's parameters: the network's, and a learned log-std for Gaussian actions."""
    params = {"net": net_params}
    if not discrete:
        params["log_std"] = jnp.full((action_dim,), init_log_std, jnp.float32)
    return params


def log_prob(dist: Distribution | TanhGaussian, action: jax.Array) -> jax.Array:
    """log π(a|s), summed over action dimensions."""
    if isinstance(dist, TanhGaussian):  # u = atanh(a), a kept inside (-1, 1)
        u = jnp.arctanh(jnp.clip(action, -1.0 + 1e-6, 1.0 - 1e-6))
        return tanh_gaussian_log_prob(u, dist.mean, dist.log_std)
    if isinstance(dist, Gaussian):
        z = (action - dist.mean) * jnp.exp(-dist.log_std)
        return jnp.sum(-0.5 * z**2 - dist.log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)
    logp = jax.nn.log_softmax(dist.logits)
    return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]


def sample(dist: Distribution | TanhGaussian, *, key: jax.Array) -> jax.Array:
    if isinstance(dist, TanhGaussian):
        noise = jax.random.normal(key, dist.mean.shape)
        return jnp.tanh(dist.mean + jnp.exp(dist.log_std) * noise)
    if isinstance(dist, Gaussian):
        noise = jax.random.normal(key, dist.mean.shape)
        return dist.mean + jnp.exp(dist.log_std) * noise
    return jax.random.categorical(key, dist.logits)


def mode(dist: Distribution | TanhGaussian) -> jax.Array:
    """The most likely action; for a tanh-Gaussian its squashed mean, SAC's test-time action."""
    if isinstance(dist, TanhGaussian):
        return jnp.tanh(dist.mean)
    return dist.mean if isinstance(dist, Gaussian) else jnp.argmax(dist.logits, axis=-1)


def entropy(dist: Distribution) -> jax.Array:
    if isinstance(dist, Gaussian):
        log_std = jnp.broadcast_to(dist.log_std, dist.mean.shape)
        return jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e), axis=-1)
    logp = jax.nn.log_softmax(dist.logits)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def kl(p: Distribution, q: Distribution) -> jax.Array:
    """KL(p || q), summed over action dimensions."""
    if isinstance(p, Gaussian) and isinstance(q, Gaussian):
        var_p, var_q = jnp.exp(2 * p.log_std), jnp.exp(2 * q.log_std)
        terms = q.log_std - p.log_std + (var_p + (p.mean - q.mean) ** 2) / (2 * var_q) - 0.5
        return jnp.sum(jnp.broadcast_to(terms, jnp.broadcast_shapes(p.mean.shape, q.mean.shape)),
                       axis=-1)
    if isinstance(p, Categorical) and isinstance(q, Categorical):
        logp, logq = jax.nn.log_softmax(p.logits), jax.nn.log_softmax(q.logits)
        return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)
    raise TypeError("KL between a Gaussian and a categorical distribution")


@dataclasses.dataclass(frozen=True)
class Policy:
    """An MLP policy for one observation/action space."""

    obs_dim: int
    action_dim: int  # Gaussian: action dimensions; categorical: number of actions
    discrete: bool
    hidden: tuple[int, ...] = (100, 100)
    init_log_std: float = 0.0

    @property
    def net(self) -> MLP:
        return MLP(self.hidden, self.action_dim)

    def init(self, *, key: jax.Array):
        net = self.net.init(key, jnp.zeros((1, self.obs_dim)))["params"]
        return _with_log_std(net, self.discrete, self.action_dim, self.init_log_std)

    def apply(self, params, obs: jax.Array) -> Distribution:
        out = cast(jax.Array, self.net.apply({"params": params["net"]}, obs))
        return distribution(self.discrete, out, params)


def policy_for(observation_space: gym.spaces.Space, action_space: gym.spaces.Space, *,
               hidden: tuple[int, ...], init_log_std: float = 0.0) -> Policy:
    """The Gaussian or categorical MLP policy that fits a pair of Gymnasium spaces."""
    obs_dim = gym.spaces.flatdim(observation_space)
    if isinstance(action_space, gym.spaces.Discrete):
        return Policy(obs_dim, int(action_space.n), True, hidden, init_log_std)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return Policy(obs_dim, int(action_space.shape[0]), False, hidden, init_log_std)
    raise UserError(f"no policy for action space {action_space}")


# ---- recurrent policies (RL²) -----------------------------------------------------------
class GRUActorCritic(nn.Module):
    """Two GRUs over the same input stream: one feeds the action head, one the value head
    (Duan et al. 2016 use a GRU policy and a GRU baseline), optionally after a shared ReLU
    layer of width ``input_layer`` over the input (0: none). The carry is
    ``(h_pi, h_v, t)``, ``t`` the number of steps taken since the carry was reset.

    With ``head_layer > 0`` the action head reads a ReLU layer of that width over the policy
    GRU's output *and* the step's raw input: a linear head on the GRU alone must have the
    current state already mixed into the GRU's output to pick, say, the action remembered
    as best in that state; the skip lets the head do the look-up itself.

    With ``trial_steps > 0`` the value head also sees the fraction of the trial still to
    come, ``left = 1 - t / trial_steps``: its input is ``[y_v, left, left * y_v]``, since
    the return still to collect is roughly the GRU's estimate of the reward rate times
    ``left``, and a GRU counting 100 steps on its own is imprecise. Only the critic sees
    it; the policy's input is RL²'s alone.

    With ``privileged`` (a privileged critic), the value GRU's input also carries a ReLU
    layer of width ``hidden`` over ``context``, the task's parameters
    (:meth:`adaptrl.tasks.base.RLFamily.task_features`); the policy GRU never sees them."""

    hidden: int
    out: int
    trial_steps: int = 0
    input_layer: int = 0
    privileged: bool = False
    head_layer: int = 0

    @nn.compact
    def __call__(self, carry, x, context=None):
        h_pi, h_v, t = carry
        x_in = x
        if self.input_layer:
            x = nn.relu(nn.Dense(self.input_layer, name="input_layer")(x))
        h_pi, y_pi = nn.GRUCell(self.hidden, name="policy_gru")(h_pi, x)
        x_v = x
        if self.privileged:
            c = nn.relu(nn.Dense(self.hidden, name="critic_context")(context))
            x_v = jnp.concatenate([x, jnp.broadcast_to(c, (*x.shape[:-1], c.shape[-1]))], -1)
        h_v, y_v = nn.GRUCell(self.hidden, name="value_gru")(h_v, x_v)
        out = _action_head(y_pi, x_in, self.out, self.head_layer)
        return (h_pi, h_v, t + 1.0), out, _value_head(y_v, t, self.trial_steps)


def _action_head(y: jax.Array, x: jax.Array, out: int, head_layer: int) -> jax.Array:
    """The action distribution's parameters ``[..., out]`` from the network's features
    ``y``; with ``head_layer > 0`` through a ReLU layer of that width over ``[y, x]``, ``x``
    the step's raw input."""
    if head_layer:
        y = nn.relu(nn.Dense(head_layer, name="head_layer")(jnp.concatenate([y, x], -1)))
    return nn.Dense(out, name="policy_head")(y)


def _value_head(y: jax.Array, t: jax.Array, trial_steps: int) -> jax.Array:
    """The value estimate ``[...]`` from features ``y [..., d]`` at trial step ``t``; with
    ``trial_steps > 0`` from ``[y, left, left * y]``, ``left = 1 - t / trial_steps``."""
    if trial_steps:
        left = (1.0 - t / trial_steps)[..., None]
        y = jnp.concatenate([y, left, left * y], -1)
    return nn.Dense(1, name="value_head")(y)[..., 0]


@dataclasses.dataclass(frozen=True)
class RecurrentPolicy:
    """A GRU policy and GRU value function over an input stream of width ``input_dim``.

    ``step(params, carry, x)`` maps one input ``[..., input_dim]`` and carry to the new
    carry, the action distribution and the value estimate ``[...]``. The carry is reset
    (``initial_carry``) by the caller only: :mod:`adaptrl.sampling.trials` does it at trial
    boundaries.
    """

    input_dim: int
    action_dim: int  # Gaussian: action dimensions; categorical: number of actions
    discrete: bool
    hidden: int = 256
    init_log_std: float = 0.0
    trial_steps: int = 0  # > 0: the value head sees the fraction of the trial still to come
    input_layer: int = 0  # > 0: width of a ReLU layer over the input, shared by both GRUs
    context_dim: int = 0  # > 0: a privileged critic; ``step`` takes the task's features [F]
    head_layer: int = 0  # > 0: a ReLU layer over [policy GRU output, input] before the head

    @property
    def net(self) -> GRUActorCritic:
        return GRUActorCritic(self.hidden, self.action_dim, self.trial_steps,
                              self.input_layer, privileged=self.context_dim > 0,
                              head_layer=self.head_layer)

    def initial_carry(self, batch_shape: tuple[int, ...] = ()):
        h = jnp.zeros((*batch_shape, self.hidden), jnp.float32)
        return (h, h, jnp.zeros(batch_shape, jnp.float32))

    def init(self, *, key: jax.Array):
        x = jnp.zeros((self.input_dim,), jnp.float32)
        context = jnp.zeros((self.context_dim,), jnp.float32) if self.context_dim else None
        net = self.net.init(key, self.initial_carry(), x, context)["params"]
        return _with_log_std(net, self.discrete, self.action_dim, self.init_log_std)

    def step(self, params, carry, x: jax.Array, context: jax.Array | None = None):
        """``context``: the task's features ``[F]``, for a privileged critic only."""
        carry, out, value = cast(tuple, self.net.apply({"params": params["net"]}, carry, x,
                                                       context))
        return carry, distribution(self.discrete, out, params), value


class TransformerActorCritic(nn.Module):
    """A small causal transformer over the trial so far (pre-LayerNorm blocks of causal
    self-attention and a ReLU MLP, learned position embeddings), shared by the action head
    and the value head. ``decode=True`` processes one step ``x [..., 1, input_dim]`` against
    the attention cache of the steps before (flax's ``"cache"`` collection); otherwise
    ``x [S, input_dim]`` is a whole sequence and ``mask`` its attention mask."""

    width: int
    layers: int
    heads: int
    out: int
    max_steps: int
    trial_steps: int = 0
    input_layer: int = 0
    head_layer: int = 0

    @nn.compact
    def __call__(self, x, t, decode: bool, mask=None):
        x_in = x
        if self.input_layer:
            x = nn.relu(nn.Dense(self.input_layer, name="input_layer")(x))
        position = jnp.minimum(t, self.max_steps - 1).astype(jnp.int32)
        h = nn.Dense(self.width)(x) + nn.Embed(self.max_steps, self.width)(position)
        for _ in range(self.layers):
            y = nn.LayerNorm()(h)
            h = h + nn.MultiHeadDotProductAttention(self.heads, decode=decode)(y, mask=mask)
            y = nn.LayerNorm()(h)
            h = h + nn.Dense(self.width)(nn.relu(nn.Dense(4 * self.width)(y)))
        h = nn.LayerNorm()(h)
        return (_action_head(h, x_in, self.out, self.head_layer),
                _value_head(h, t, self.trial_steps))


@dataclasses.dataclass(frozen=True)
class TransformerPolicy:
    """RL²'s policy and value function as a causal transformer over the trial's inputs —
    the same interface as :class:`RecurrentPolicy`. The carry is the attention cache (keys
    and values of every step taken so far, ``max_steps`` slots) and the step count ``t``;
    resetting it (``initial_carry``) forgets the trial, as a GRU's reset does."""

    input_dim: int
    action_dim: int  # Gaussian: action dimensions; categorical: number of actions
    discrete: bool
    max_steps: int  # the longest trial, in steps (cache length and position embeddings)
    width: int = 64
    layers: int = 2
    heads: int = 4
    init_log_std: float = 0.0
    trial_steps: int = 0  # > 0: the value head sees the fraction of the trial still to come
    input_layer: int = 0  # > 0: width of a ReLU layer over the input
    head_layer: int = 0  # > 0: a ReLU layer over [trunk output, input] before the head

    @property
    def net(self) -> TransformerActorCritic:
        return TransformerActorCritic(self.width, self.layers, self.heads, self.action_dim,
                                      self.max_steps, self.trial_steps, self.input_layer,
                                      self.head_layer)

    def _init(self, key: jax.Array):
        x = jnp.zeros((self.max_steps, self.input_dim), jnp.float32)
        return self.net.init(key, x, jnp.arange(self.max_steps, dtype=jnp.float32), decode=True)

    def initial_carry(self):
        shapes = jax.eval_shape(self._init, jax.random.PRNGKey(0))["cache"]
        cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return (cache, jnp.zeros((), jnp.float32))

    def init(self, *, key: jax.Array):
        net = self._init(key)["params"]
        return _with_log_std(net, self.discrete, self.action_dim, self.init_log_std)

    def step(self, params, carry, x: jax.Array):
        cache, t = carry
        (out, value), new = self.net.apply({"params": params["net"], "cache": cache}, x[None],
                                           t[None], decode=True, mutable=["cache"])
        return (new["cache"], t + 1.0), distribution(self.discrete, out[0], params), value[0]

    def sequence(self, params, xs: jax.Array, mask: jax.Array):
        """All steps of a trial at once: ``xs [S, input_dim]``, ``mask [S]`` (1 for real
        steps). For every real step, the same distribution and value as :meth:`step` applied
        in turn from ``initial_carry`` over the real steps only (masked steps neither take a
        position nor are attended to; their outputs are meaningless)."""
        real = mask > 0
        t = jnp.cumsum(real) - real  # real steps before each step
        i = jnp.arange(xs.shape[0])
        attend = ((i[:, None] >= i[None, :]) & real[None, :])[None]  # [heads=1, S, S]
        out, value = self.net.apply({"params": params["net"]}, xs, t.astype(jnp.float32),
                                    decode=False, mask=attend)
        return distribution(self.discrete, out, params), value
