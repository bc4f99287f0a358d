"""The tensors of one `Weights` as columns, built once per weights object.

The planner evaluates dozens of placements per quantization and reads each one's per-token traffic;
Python loops over the 1,000-2,000 tensors of a large model made every evaluation cost milliseconds.
As numpy columns, a placement or a traffic sum is a few vectorised operations (byte counts stay
exact in float64: every sum is far below 2**53). What does not depend on the tensor types (names,
layers, roles, sizes) is one `TensorLayout`, shared by every quantization of the same inventory.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from moeplan.arch.inventory import Role, TensorSpec
from moeplan.memo import PER_MODEL, PER_MODEL_QUANT, by_identity
from moeplan.memory.weights import Weights


@dataclass(frozen=True, eq=False)
class TensorLayout:
    specs: tuple[TensorSpec, ...]
    names: tuple[str, ...]
    index: dict[str, int]  # name -> row
    layer: NDArray[np.int64]  # -1 for global tensors
    roles: dict[Role, NDArray[np.bool_]]  # which rows have each role
    elements: NDArray[np.float64]
    matrix: NDArray[np.bool_]  # two or more dimensions (a matmul operand, not a norm or bias)

    def row(self, *names: str) -> int:
        """The row of the first of `names` present, -1 if none is."""
        return next((self.index[n] for n in names if n in self.index), -1)

    def layer_rows(self, n_layer: int, *kinds: str) -> NDArray[np.int64]:
        """Per decoder layer, the row of its first `blk.{il}.{kind}.weight` present (-1: none)."""
        return np.array(
            [self.row(*(f"blk.{il}.{k}.weight" for k in kinds)) for il in range(n_layer)], dtype=np.int64
        )


@dataclass(frozen=True, eq=False)
class TensorTable:
    layout: TensorLayout
    types: NDArray[np.int64]  # GGMLType values
    nbytes: NDArray[np.float64]

    @property
    def names(self) -> tuple[str, ...]:
        return self.layout.names

    @property
    def layer(self) -> NDArray[np.int64]:
        return self.layout.layer

    @property
    def elements(self) -> NDArray[np.float64]:
        return self.layout.elements

    @property
    def matrix(self) -> NDArray[np.bool_]:
        return self.layout.matrix

    def role_is(self, *roles: Role) -> NDArray[np.bool_]:
        masks = self.layout.roles
        return masks[roles[0]] if len(roles) == 1 else np.logical_or.reduce([masks[r] for r in roles])

    def row(self, *names: str) -> int:
        return self.layout.row(*names)

    def bytes_by_layer(self, rows: NDArray[np.bool_], n_layer: int) -> list[int]:
        """Bytes of the selected rows per layer 0..n_layer-1 (rows outside that range are ignored)."""
        keep = rows & (self.layer >= 0) & (self.layer < n_layer)
        return [
            round(b)
            for b in np.bincount(self.layer[keep], weights=self.nbytes[keep], minlength=n_layer).tolist()
        ]


class _SameSpecs:
    """A tensor list hashed and compared by the identity of its specs: every prediction from one
    inventory shares the inventory's spec objects (held here, so their ids stay theirs)."""

    __slots__ = ("_key", "specs")

    def __init__(self, specs: tuple[TensorSpec, ...]) -> None:
        self.specs = specs
        self._key = tuple(map(id, specs))

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SameSpecs) and self._key == other._key


_ROLES = tuple(Role)


@lru_cache(maxsize=PER_MODEL)
def _layout(same: _SameSpecs) -> TensorLayout:
    specs = same.specs
    names = tuple(s.name for s in specs)
    role_index = {r: k for k, r in enumerate(_ROLES)}
    roles = np.array([role_index[s.role] for s in specs], dtype=np.int64)
    return TensorLayout(
        specs,
        names,
        {n: i for i, n in enumerate(names)},
        np.array([-1 if s.layer is None else s.layer for s in specs], dtype=np.int64),
        {r: roles == k for k, r in enumerate(_ROLES)},
        np.array([s.n_elements for s in specs], dtype=np.float64),
        np.array([len(s.shape) >= 2 for s in specs], dtype=np.bool_),
    )


@by_identity(maxsize=PER_MODEL_QUANT)
def tensor_table(w: Weights) -> TensorTable:
    c = w.columns()  # a prediction's own columns: no tensor-by-tensor walk
    return TensorTable(_layout(_SameSpecs(c.specs)), c.types, c.nbytes.astype(np.float64))
