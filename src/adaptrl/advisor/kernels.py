"""The surrogate's kernel (scikit-learn, imported only by the advisor's optional extra):
additive and product terms over the family features and the strategy settings, which
scikit-learn's kernels cannot restrict to some input columns on their own."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.gaussian_process.kernels import (
    RBF,
    ConstantKernel,
    Hyperparameter,
    Kernel,
    WhiteKernel,
)


class Columns(Kernel):
    """``kernel`` on some input columns only: ``kernel(X[:, columns], Y[:, columns])``."""

    def __init__(self, kernel: Kernel, columns: tuple[int, ...]):
        self.kernel = kernel
        self.columns = columns

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params: dict[str, Any] = {"kernel": self.kernel, "columns": self.columns}
        if deep:
            params.update(("kernel__" + k, v) for k, v in self.kernel.get_params().items())
        return params

    @property
    def hyperparameters(self) -> list[Hyperparameter]:
        return [Hyperparameter("kernel__" + h.name, h.value_type, h.bounds, h.n_elements,
                               h.fixed) for h in self.kernel.hyperparameters]

    @property
    def theta(self) -> np.ndarray:
        return self.kernel.theta

    @theta.setter
    def theta(self, theta: np.ndarray) -> None:
        self.kernel.theta = theta

    @property
    def bounds(self) -> np.ndarray:
        return self.kernel.bounds

    def __call__(self, X, Y=None, eval_gradient=False):
        cols = list(self.columns)
        return self.kernel(np.asarray(X)[:, cols],
                           None if Y is None else np.asarray(Y)[:, cols], eval_gradient)

    def diag(self, X) -> np.ndarray:
        return self.kernel.diag(np.asarray(X)[:, list(self.columns)])

    def is_stationary(self) -> bool:
        return self.kernel.is_stationary()

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.columns == other.columns and \
            self.kernel == other.kernel


def kernel(n_family: int, n_strategy: int) -> Kernel:
    """The kernel over ``[family features (n_family) | strategy settings (n_strategy)]``:

        k = a² k_S(s, s') + b² k_S'(s, s') k_F(f, f') + c² k_F'(f, f') + noise

    with ARD squared-exponential kernels k_S, k_S' over the strategy settings and k_F, k_F'
    over the family features. The first term is what a strategy is worth on any family (it
    carries a ranking to a family far from all others); the second how that depends on the
    family (a strategy scores alike on families with alike features: memory-based learners
    ahead on small discrete families, say, gradient-based ones on continuous control); the
    third the family's own level (how hard it is for every strategy), which no ranking
    depends on. Additive and product kernels as in Duvenaud, Nickisch and Rasmussen (2011),
    "Additive Gaussian processes"; the amplitudes, length scales and noise are fit by
    maximum marginal likelihood (scikit-learn's ``GaussianProcessRegressor``)."""
    fam = tuple(range(n_family))
    strat = tuple(range(n_family, n_family + n_strategy))

    def amplitude() -> ConstantKernel:
        return ConstantKernel(0.05, (1e-4, 1e1))

    def on(cols: tuple[int, ...]) -> Columns:
        return Columns(RBF(np.full(len(cols), 2.0), (0.3, 1e3)), cols)

    return (amplitude() * on(strat) + amplitude() * on(strat) * on(fam)
            + amplitude() * on(fam) + WhiteKernel(1e-2, (1e-4, 0.5)))
