"""Trials: the unit of experience of in-context meta-RL (RL², Duan et al. 2016, Sec. 2.2;
Wang et al. 2016).

A *trial* is ``episodes`` consecutive episodes of **one** task. A recurrent policy sees at
every step the input

    x_t = [ o_t,  enc(a_{t-1}),  r_{t-1},  d_{t-1} ]

— the observation, the previous action (one-hot for discrete actions, the raw vector for
continuous ones), the previous reward and a flag that the previous step ended an episode.
Its recurrent state is **kept across episode boundaries inside a trial** (that memory is
what lets it learn about the task) and **reset only at trial boundaries**: every trial
starts from ``policy.initial_carry()`` with a zero previous action, reward and flag.

This module is the only place that defines those rules; every algorithm that learns from
trials (RL² and relatives), the host sampler (:mod:`adaptrl.sampling.host`, through
:func:`act` and :func:`remember`), the Gymnasium trial export and the tests use it.

Layout: a trial is a flat, time-major sequence of ``S = episodes * horizon`` steps; episode
``e`` occupies steps ``[e * horizon, (e + 1) * horizon)``. If a family ends an episode
early, the remaining steps of that episode are masked (``mask = 0``): the environment is
frozen, the policy's state is not advanced, and the next episode starts on schedule.

A recurrent policy is any object with ``initial_carry()`` and
``step(params, carry, x) -> (carry, distribution, value)`` (see
:class:`adaptrl.policies.RecurrentPolicy`); one with ``context_dim > 0`` has a privileged
critic and also takes the task's features, ``step(params, carry, x, context)``, which only
its value estimate may depend on (:func:`critic_context`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp

from adaptrl import policies
from adaptrl.tasks.base import RLFamily


class Trial(NamedTuple):
    """One trial, time-major over ``S = episodes * horizon`` steps (``vmap`` adds axes)."""

    inputs: jax.Array  # [S, input_dim] what the policy saw before acting
    action: jax.Array  # [S] or [S, action_dim] sampled action
    reward: jax.Array  # [S] reward (0 on masked steps)
    done: jax.Array  # [S] the step ended its episode (terminal or horizon)
    mask: jax.Array  # [S] 1.0 for real steps, 0.0 after an early termination
    log_prob: jax.Array  # [S] log π(a|x) under the sampling policy
    value: jax.Array  # [S] the policy's value estimate at the step
    success: jax.Array  # [S] the family's success flag (False where it has none)


class _Carry(NamedTuple):
    policy: Any  # the policy's recurrent state
    obs: jax.Array
    env_state: Any
    prev_action: jax.Array  # encoded previous action
    prev_reward: jax.Array  # scalar
    prev_done: jax.Array  # scalar 0/1
    alive: jax.Array  # bool: the current episode has not terminated
    t: jax.Array  # int: step index within the episode


def action_encoding_dim(action_space: gym.spaces.Space) -> int:
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    return gym.spaces.flatdim(action_space)


def encode_action(action: jax.Array, action_space: gym.spaces.Space) -> jax.Array:
    """One-hot ``[n]`` for a discrete action; the action vector itself for a Box."""
    if isinstance(action_space, gym.spaces.Discrete):
        return jax.nn.one_hot(action, int(action_space.n), dtype=jnp.float32)
    return jnp.asarray(action, jnp.float32).reshape(-1)


def input_dim(family) -> int:
    """Width of the policy input: observation + encoded action + reward + done flag."""
    return int(family.observation_space.shape[0]) + action_encoding_dim(family.action_space) + 2


def make_input(obs, prev_action_enc, prev_reward, prev_done) -> jax.Array:
    """``[obs_dim] + [enc_dim] + [] + [] -> [input_dim]`` (the layout of :func:`input_dim`)."""
    return jnp.concatenate([
        jnp.asarray(obs, jnp.float32).reshape(-1), prev_action_enc,
        jnp.asarray(prev_reward, jnp.float32)[None], jnp.asarray(prev_done, jnp.float32)[None],
    ])


def critic_context(family, policy, task) -> jax.Array | None:
    """The task's features for a policy with a privileged critic (``context_dim > 0``:
    only its value estimate sees them), else None."""
    return family.task_features(task) if getattr(policy, "context_dim", 0) else None


def _policy_step(policy, params, carry, x, context):
    if context is None:
        return policy.step(params, carry, x)
    return policy.step(params, carry, x, context)


def _where(cond, new, old):
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)


def act(policy, params, context, greedy: bool, h, x, key):
    """The policy's half of a trial step: from memory ``h`` and input ``x``, the new memory,
    the action (sampled with ``key``, or the most likely one with ``greedy``), its log
    probability and the value estimate. Shared by the jitted and the host trial loops."""
    h_new, dist, value = _policy_step(policy, params, h, x, context)
    action = policies.mode(dist) if greedy else policies.sample(dist, key=key)
    return h_new, action, policies.log_prob(dist, action), value


def remember(action_space, alive, h_new, h, action, reward, ended, prev_action, prev_reward,
             prev_done):
    """Advance the policy's memory and the "previous step" inputs, on real steps only
    (``alive``): a masked step after an early termination changes nothing."""
    h = _where(alive, h_new, h)
    prev_action = jnp.where(alive, encode_action(action, action_space), prev_action)
    prev_reward = jnp.where(alive, jnp.asarray(reward, jnp.float32), prev_reward)
    prev_done = jnp.where(alive, jnp.asarray(ended, jnp.float32), prev_done)
    return h, prev_action, prev_reward, prev_done


def _trial_step(family: RLFamily, policy, params, task, context, greedy: bool, carry: _Carry,
                key):
    """One step of a trial: act, step the environment, roll over at episode ends."""
    k_act, k_env, k_reset = jax.random.split(key, 3)
    x = make_input(carry.obs, carry.prev_action, carry.prev_reward, carry.prev_done)
    h, action, log_prob, value = act(policy, params, context, greedy, carry.policy, x, k_act)
    obs, env_state, reward, terminal, info = family.step(k_env, carry.env_state, action, task)
    alive = carry.alive
    end_of_episode = carry.t + 1 == family.horizon
    ended = (terminal | end_of_episode) & alive
    out = Trial(
        inputs=x, action=action, reward=reward * alive, done=ended,
        mask=alive.astype(jnp.float32), log_prob=log_prob,
        value=value, success=info.get("success", jnp.array(False)) & alive,
    )
    # the policy's memory and the "previous step" inputs advance only on real steps ...
    h, prev_action, prev_reward, prev_done = remember(
        family.action_space, alive, h, carry.policy, action, reward, ended, carry.prev_action,
        carry.prev_reward, carry.prev_done)
    # ... and the environment restarts (same task) when the episode's slot is over
    reset_obs, reset_state = family.reset(k_reset, task)
    obs = _where(end_of_episode, reset_obs, _where(alive, obs, carry.obs))
    env_state = _where(end_of_episode, reset_state, _where(alive, env_state, carry.env_state))
    new = _Carry(
        policy=h, obs=obs, env_state=env_state, prev_action=prev_action,
        prev_reward=prev_reward, prev_done=prev_done,
        alive=end_of_episode | (alive & ~terminal),
        t=jnp.where(end_of_episode, 0, carry.t + 1),
    )
    return new, out


def initial_inputs(family):
    """The "previous step" inputs at the start of a trial: zero action, reward and flag."""
    enc = jnp.zeros((action_encoding_dim(family.action_space),), jnp.float32)
    return enc, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)


def trial(family: RLFamily, policy, params: Any, task: Any, *, key: jax.Array,
          episodes: int, greedy: bool = False) -> Trial:
    """One trial of ``episodes`` episodes of ``task``: arrays ``[episodes * horizon, ...]``.

    The policy's carry starts at ``policy.initial_carry()`` and is never reset inside.
    Actions are sampled from the policy, or with ``greedy`` its most likely action.
    """
    k_reset, k_steps = jax.random.split(key)
    obs, env_state = family.reset(k_reset, task)
    prev_action, prev_reward, prev_done = initial_inputs(family)
    init = _Carry(policy.initial_carry(), obs, env_state, prev_action, prev_reward, prev_done,
                  jnp.array(True), jnp.array(0, jnp.int32))
    context = critic_context(family, policy, task)  # once per trial: the task is fixed
    body = functools.partial(_trial_step, family, policy, params, task, context, greedy)
    _, out = jax.lax.scan(body, init, jax.random.split(k_steps, episodes * family.horizon))
    return out


def _replay_step(policy, params, context, carry, inputs):
    x, mask = inputs
    new, dist, value = _policy_step(policy, params, carry, x, context)
    return _where(mask > 0, new, carry), (dist, value)


def replay(policy, params: Any, inputs: jax.Array, mask: jax.Array,
           context: jax.Array | None = None):
    """Re-run a recurrent policy over a recorded trial's inputs ``[S, input_dim]`` from the
    trial-start carry, advancing only on ``mask [S]`` steps (as :func:`trial` does);
    ``context`` is the trial's :func:`critic_context`.

    Returns ``(distributions [S, ...], values [S])`` — differentiable in ``params``; this is
    how the learner evaluates new parameters on old trials (backpropagation through the
    whole trial). A policy with a ``sequence(params, inputs, mask)`` method (the
    transformer) computes the same outputs for all steps at once.
    """
    if hasattr(policy, "sequence"):  # e.g. a transformer: all steps in parallel
        return policy.sequence(params, inputs, mask)
    body = functools.partial(_replay_step, policy, params, context)
    _, (dist, value) = jax.lax.scan(body, policy.initial_carry(), (inputs, mask))
    return dist, value


def per_episode(x: jax.Array, episodes: int) -> jax.Array:
    """``[..., episodes * horizon] -> [..., episodes, horizon]``."""
    return x.reshape(*x.shape[:-1], episodes, x.shape[-1] // episodes)


def episode_returns(tr: Trial, episodes: int) -> jax.Array:
    """Undiscounted return of each episode of a trial: ``[..., S] -> [..., episodes]``."""
    return per_episode(tr.reward, episodes).sum(-1)


def episode_successes(tr: Trial, episodes: int) -> jax.Array:
    """Whether each episode of a trial hit the success flag: ``[..., episodes]`` (0/1)."""
    return per_episode(tr.success, episodes).any(-1).astype(jnp.float32)
