"""Memoisation keyed by the identity of a large immutable first argument.

Model specs, inventories and typed weights are frozen dataclasses whose value hash walks every
layer or tensor (milliseconds for a 1,000-tensor model), so `functools.lru_cache` on them costs more
than it saves. The planner evaluates dozens of placements of the same objects; keying on `id()` (with
the object held, so the id cannot be reused while cached) makes each lookup constant time.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec, TypeVar

# Entries a cache keyed per (model, quantization) needs to hold the whole checker sweep (75 catalog
# models x the quantization ladder x context steps, and then some): smaller, the sweep cycles
# through more objects than the cache holds and every rig recomputes everything.
PER_MODEL_QUANT = 4096
PER_MODEL = 1024

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


def by_identity(maxsize: int) -> Callable[[Callable[Concatenate[T, P], R]], Callable[Concatenate[T, P], R]]:
    """Cache `f(obj, *args, **kwargs)` on obj's identity and the other arguments' values (LRU)."""

    def decorate(f: Callable[Concatenate[T, P], R]) -> Callable[Concatenate[T, P], R]:
        memo: OrderedDict[tuple[object, ...], tuple[T, R]] = OrderedDict()
        lock = threading.Lock()

        @wraps(f)
        def cached(obj: T, /, *args: P.args, **kwargs: P.kwargs) -> R:
            key = (id(obj), args, tuple(sorted(kwargs.items())))
            with lock:
                hit = memo.get(key)
                if hit is not None and hit[0] is obj:
                    memo.move_to_end(key)
                    return hit[1]
            value = f(obj, *args, **kwargs)
            with lock:
                memo[key] = (obj, value)
                while len(memo) > maxsize:
                    memo.popitem(last=False)
            return value

        return cached

    return decorate
