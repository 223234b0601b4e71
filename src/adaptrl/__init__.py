"""adaptrl: deep reinforcement meta-learning in JAX.

The library's entry points: task families (:mod:`adaptrl.tasks`), algorithms
(:mod:`adaptrl.algos`), run directories and training (:mod:`adaptrl.runs`), and the
meta-test harness (:mod:`adaptrl.evaluation`).
"""

from adaptrl.errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__"]
