"""The graph ops a MoE layer adds (the speed model charges per-layer overhead by them) match the
node counts the pinned llama.cpp reports for the same models ("graph: nodes = N")."""

import re

import pytest
from validation.llamacpp import run
from validation.runtime import subject

from moeplan.perf.traffic import DENSE_LAYER_NODES, layer_ops

pytestmark = pytest.mark.llamacpp

_NODES = re.compile(r"graph: nodes = (\d+)")


def graph_nodes(path: str, *override: str) -> int:
    args = ["-m", path, "-p", "hi", "-n", "1", "-t", "2", "--no-warmup", "-no-cnv", "-v"]
    for kv in override:
        args += ["--override-kv", kv]
    r = run("llama-completion", args, timeout=120)
    m = _NODES.search(r.stdout + r.stderr)
    assert m, r.failure()
    return int(m.group(1))


def test_moe_layer_nodes_follow_the_experts_used() -> None:
    """Mixtral (llama arch, 2 of 8 experts) against dense Llama: the same attention, so the
    difference per layer is the MoE FFN's extra nodes; more experts used add 2 nodes each."""
    dense, moe = subject("llama"), subject("mixtral", slim=True)
    n_layer = moe.spec.n_layer
    assert dense.spec.n_layer == n_layer
    extra = (graph_nodes(str(moe.path)) - graph_nodes(str(dense.path))) / n_layer
    predicted = (layer_ops(moe.spec).mean() - 1) * DENSE_LAYER_NODES
    assert abs(extra - predicted) <= 1, (extra, predicted)
    k8 = graph_nodes(str(moe.path), "llama.expert_used_count=int:8")
    assert abs((k8 - graph_nodes(str(moe.path))) / n_layer - 2 * 6) <= 1
