"""MuJoCo locomotion task families: cheetah-vel, cheetah-dir, ant-dir, ant-goal and
walker-params, with the rewards, horizons and task ranges of the authors' code.

Each family is a :class:`~adaptrl.tasks.gymnasium.GymnasiumFamily` over a Gymnasium v5
robot (MuJoCo 3) and is stepped by the host sampler in worker processes. What follows whom:

============== ============================== ====================================== =====
family         task                           reward per step (a = action)           split
============== ============================== ====================================== =====
cheetah-vel    target velocity v* ~ U[0, 2]   −|v_x − v*| − 0.05‖a‖²                 100/30
               (MAML, ``cbfinn/maml_rl``      (``half_cheetah_env_rand.py``)
               ``half_cheetah_env_rand.py``)
cheetah-dir    direction d ∈ {−1, +1}         d·v_x − 0.05‖a‖²                        2/2
               (MAML, ``..._rand_direc.py``)
ant-dir        direction d ∈ {−1, +1} along x d·v_x − 0.5‖a‖² − contact + 1,         2/2
               (PEARL ``katerakelly/oyster``  ends when the torso leaves z ∈ [0.2, 1]
               ``ant_dir.py``, forward/back)
ant-goal       goal g uniform in the disc of  −‖xy − g‖₁ − 0.1‖a‖² − contact,         150/30
               radius 3 (PEARL ``ant_goal.py``, never ends
               after ProMP)
walker-params  body masses, inertias and      Walker2d's own: v_x + 1 − 1e-3‖a‖²,    40/10
               frictions × 1.5^U[−3, 3],      ends when it falls
               damping × 1.3^U[−3, 3], per
               element (PEARL's
               ``rand_param_envs``)
============== ============================== ====================================== =====

Every horizon is 200 (MAML and PEARL). "contact" is 5e-4 Σ clip(external contact
forces, −1, 1)², Gymnasium Ant-v5's own contact cost, which equals PEARL's. The split
column is PEARL's number of meta-train tasks (a fixed pool, ``train_pool``) and of held-out
tasks (``adaptrl eval --num-tasks``); MAML draws fresh tasks every iteration, and its paper
settings set ``tasks.train_pool=0``. cheetah-dir and ant-dir have two tasks, so their
held-out tasks are their training tasks (``finite_tasks``), as in both papers.

Differences from the authors' code, which used mujoco-py and gym 0.x models: Gymnasium v5's
robots and observations (HalfCheetah leaves out the x position; rllab's cheetah also
observed the torso's centre of mass), Gymnasium's reset noise (0.1), and Walker2d-v5's
equal foot frictions (gym's walker had 1.9 on the left foot). Velocities are Gymnasium's
``info["x_velocity"]`` (the root joint's displacement over ``dt`` for the cheetah and the
walker, the torso's for the ant), as in the authors' code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from adaptrl.tasks.base import Task
from adaptrl.tasks.gymnasium import GymnasiumFamily


def _squared(action: Any) -> float:
    """‖a‖² in float64 (a Python sum: this runs once per environment step, where NumPy's
    call overhead on a 6-vector costs more than the arithmetic)."""
    return sum(x * x for x in np.asarray(action).reshape(-1).tolist())


@dataclasses.dataclass(frozen=True)
class CheetahVel(GymnasiumFamily):
    """HalfCheetah running at a hidden target velocity (MAML's cheetah-vel)."""

    env_id: str = "HalfCheetah-v5"
    horizon: int = 200
    velocity: tuple[float, float] = (0.0, 2.0)
    # range of the target forward velocity (MAML's code: U[0, 2]; PEARL's used U[0, 3])
    train_pool: int = 100
    # PEARL's 100 meta-train tasks (0: fresh velocities every iteration, as MAML)

    task_params: ClassVar[tuple[str, ...]] = ("velocity",)
    DISTRIBUTION_OPTIONS: ClassVar[tuple[str, ...]] = ("split_seed", "velocity")

    def reward(self, task, obs, action, reward, next_obs, info):
        return -abs(float(info["x_velocity"]) - float(task["velocity"])) \
            - 0.05 * _squared(action)


@dataclasses.dataclass(frozen=True)
class _TwoDirections(GymnasiumFamily):
    """Abstract: a robot rewarded for running in one of two directions along x, hidden."""

    horizon: int = 200
    direction: tuple[float, float] = (-1.0, 1.0)
    # the two directions along x, each drawn with probability 1/2

    task_params: ClassVar[tuple[str, ...]] = ("direction",)
    finite_tasks: ClassVar[bool] = True

    def sample_one(self, key: jax.Array) -> Task:
        low, high = self.task_range("direction")
        return {"direction": jnp.where(jax.random.bernoulli(key), high, low).astype(
            jnp.float32)}

    def tasks(self, split, n, *, key=None):
        """Meta-train directions are drawn; held-out ones alternate (backward, forward, ...),
        so every meta-test scores the two directions evenly, whatever ``n``."""
        if split != "test":
            return super().tasks(split, n, key=key)
        low, high = self.task_range("direction")
        return {"direction": jnp.where(jnp.arange(n) % 2 == 0, low, high).astype(jnp.float32)}


@dataclasses.dataclass(frozen=True)
class CheetahDir(_TwoDirections):
    """HalfCheetah running forward or backward, the direction hidden (MAML's cheetah-dir)."""

    env_id: str = "HalfCheetah-v5"

    def reward(self, task, obs, action, reward, next_obs, info):
        return float(task["direction"]) * float(info["x_velocity"]) - 0.05 * _squared(action)


@dataclasses.dataclass(frozen=True)
class AntDir(_TwoDirections):
    """Ant running forward or backward along x, the direction hidden (PEARL's ant-dir)."""

    env_id: str = "Ant-v5"

    def reward(self, task, obs, action, reward, next_obs, info):
        # Ant-v5's control (0.5), contact (5e-4) and survival (1) terms are PEARL's
        return (float(task["direction"]) * float(info["x_velocity"]) + float(info["reward_ctrl"])
                + float(info["reward_contact"]) + float(info["reward_survive"]))


@dataclasses.dataclass(frozen=True)
class AntGoal(GymnasiumFamily):
    """Ant walking to a hidden goal position in a disc (PEARL's ant-goal)."""

    env_id: str = "Ant-v5"
    horizon: int = 200
    radius: tuple[float, float] = (0.0, 3.0)
    # goals are uniform over the ring (here the disc) between these radii
    angle: tuple[float, float] = (0.0, 2 * math.pi)
    # and between these angles
    train_pool: int = 150
    # PEARL's 150 meta-train goals

    task_params: ClassVar[tuple[str, ...]] = ("radius", "angle")
    make_kwargs: ClassVar[dict[str, Any]] = {"terminate_when_unhealthy": False}
    DISTRIBUTION_OPTIONS: ClassVar[tuple[str, ...]] = ("split_seed", "radius", "angle")

    def sample_one(self, key: jax.Array) -> Task:
        k_r, k_a = jax.random.split(key)
        (lo, hi), (a_lo, a_hi) = self.task_range("radius"), self.task_range("angle")
        u = jax.random.uniform(k_r, ())
        angle = jax.random.uniform(k_a, (), minval=a_lo, maxval=a_hi)
        return {"radius": jnp.sqrt(lo**2 + u * (hi**2 - lo**2)), "angle": angle}

    @staticmethod
    def goal(task: Task) -> np.ndarray:
        r, a = float(task["radius"]), float(task["angle"])
        return np.array([r * math.cos(a), r * math.sin(a)])

    def reward(self, task, obs, action, reward, next_obs, info):
        xy = np.array([float(info["x_position"]), float(info["y_position"])])
        return (-float(np.abs(xy - self.goal(task)).sum()) - 0.1 * _squared(action)
                + float(info["reward_contact"]))


#: walker-params' randomised model arrays and the base of each one's multiplier
WALKER_PARAMS: dict[str, float] = {"body_mass": 1.5, "body_inertia": 1.5,
                                   "dof_damping": 1.3, "geom_friction": 1.5}


@dataclasses.dataclass(frozen=True)
class WalkerParams(GymnasiumFamily):
    """Walker2d whose body masses, inertias, joint damping and frictions are scaled per task
    (PEARL's walker-rand-params)."""

    env_id: str = "Walker2d-v5"
    horizon: int = 200
    log_scale_limit: float = 3.0
    # every element of each array is multiplied by base**U[-limit, limit]
    train_pool: int = 40
    # PEARL's 40 meta-train tasks

    DISTRIBUTION_OPTIONS: ClassVar[tuple[str, ...]] = ("split_seed", "log_scale_limit")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.log_scale_limit <= 10:
            raise ValueError("log_scale_limit must be between 0 and 10")

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        model = self._probe.unwrapped.model  # type: ignore[attr-defined]
        return {name: tuple(getattr(model, name).shape) for name in WALKER_PARAMS}

    def sample_one(self, key: jax.Array) -> Task:
        """A task is the exponent ``u`` of each element's multiplier, base**u."""
        keys = jax.random.split(key, len(WALKER_PARAMS))
        lim = self.log_scale_limit
        return {name: jax.random.uniform(k, shape, minval=-lim, maxval=lim)
                for k, (name, shape) in zip(keys, self._shapes().items(), strict=True)}

    def task_features(self, task: Task) -> jax.Array:
        return jnp.concatenate([jnp.ravel(task[name]) for name in WALKER_PARAMS])

    def set_task(self, env, task):
        model = env.unwrapped.model
        base = env.unwrapped.__dict__.setdefault(
            "_adaptrl_base", {name: getattr(model, name).copy() for name in WALKER_PARAMS})
        for name, root in WALKER_PARAMS.items():
            getattr(model, name)[:] = base[name] * root ** np.asarray(task[name], np.float64)
