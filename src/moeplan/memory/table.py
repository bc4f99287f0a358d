"""The tensors of one `Weights` as columns, built once per weights object.

The planner evaluates dozens of placements per quantization and reads each one's per-token traffic;
Python loops over the 1,000-2,000 tensors of a large model made every evaluation cost milliseconds.
As numpy columns, a placement or a traffic sum is a few vectorised operations (byte counts stay
exact in float64: every sum is far below 2**53).
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from moeplan.arch.inventory import Role
from moeplan.memo import by_identity
from moeplan.memory.weights import Weights

@dataclass(frozen=True, eq=False)
class TensorTable:
    names: tuple[str, ...]
    index: dict[str, int]  # name -> row
    layer: NDArray[np.int64]  # -1 for global tensors
    roles: dict[Role, NDArray[np.bool_]]  # which rows have each role
    nbytes: NDArray[np.float64]
    elements: NDArray[np.float64]
    matrix: NDArray[np.bool_]  # two or more dimensions (a matmul operand, not a norm or bias)

    def role_is(self, *roles: Role) -> NDArray[np.bool_]:
        if len(roles) == 1:
            return self.roles[roles[0]]
        return np.logical_or.reduce([self.roles[r] for r in roles])

    def row(self, *names: str) -> int:
        """The row of the first of `names` present, -1 if none is."""
        return next((self.index[n] for n in names if n in self.index), -1)


@by_identity(maxsize=256)
def tensor_table(w: Weights) -> TensorTable:
    names = tuple(t.spec.name for t in w.tensors)
    return TensorTable(
        names,
        {n: i for i, n in enumerate(names)},
        np.array([-1 if t.spec.layer is None else t.spec.layer for t in w.tensors], dtype=np.int64),
        {r: np.array([t.spec.role is r for t in w.tensors], dtype=np.bool_) for r in Role},
        np.array([t.nbytes for t in w.tensors], dtype=np.float64),
        np.array([t.spec.n_elements for t in w.tensors], dtype=np.float64),
        np.array([len(t.spec.shape) >= 2 for t in w.tensors], dtype=np.bool_),
    )
