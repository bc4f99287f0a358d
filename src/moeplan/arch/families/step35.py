"""StepFun Step-3.5-Flash: full attention every fourth layer and sliding-window attention with more
query heads in between (`attention_other_setting`), a head-wise sigmoid output gate (`g_proj`,
one value per head), per-head q/k norms, leading dense layers, then routed experts (sigmoid router
with selection bias) plus one shared expert, and MTP blocks the converter keeps.

From `conversion/step3.py` Step35Model of the pinned build:
- `layer_types` covers the MTP blocks too (they follow the trunk as `model.layers.{45+i}`); the
  converter pads it with "full_attention" to block_count, and writes per-layer `head_count`,
  `head_count_kv` and `sliding_window_pattern` arrays of block_count entries;
- an MTP block is a decoder layer (dense FFN where its index is not in `moe_layers_enum`) plus
  eh_proj/enorm/hnorm and the checkpoint's own `shared_head.norm` and `shared_head.output` (an LM
  head copy, kept as `nextn.shared_head_head`); it has no embedding copy;
- llama3 rope scaling adds one global `rope_freqs` tensor of head_dim/2 entries.
The loader (`src/models/step35.cpp`) takes each layer's FFN kind from the tensors present.
"""

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig

# `llama_model_step35::load_arch_tensors` load_block_mtp: the tensors created with `mtp_flags`
# (TENSOR_SKIP unless MTP is loaded); every other tensor of the block is only TENSOR_NOT_REQUIRED.
_MTP_SKIPPABLE = frozenset(
    f"{t}.weight"
    for t in (
        *("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm"),
        *("nextn.eh_proj", "nextn.enorm", "nextn.hnorm"),
    )
)


def _moe_layers(cfg: Config, n_all: int) -> set[int]:
    """`moe_layers_enum` ("3,4,...,44"); without it every layer but the first is MoE."""
    raw = cfg.get("moe_layers_enum")
    if raw is None:
        return set(range(1, n_all))
    items = raw.split(",") if isinstance(raw, str) else raw
    try:
        return {int(x) for x in items if str(x).strip()}
    except (TypeError, ValueError):
        raise BadConfig(f"moe_layers_enum must list layer indices, got {raw!r}") from None


def _rope_type(cfg: Config) -> str:
    """The full-attention rope type as TextModel reads it (`rope_parameters` or `rope_scaling`)."""
    params: Config = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    full: Config = params.get("full_attention") or params
    return str(full.get("rope_type") or full.get("type") or "").lower()


class Step35(Family):
    arch = "step35"
    model_types = ("step3p5",)
    mtp_kept = True
    qk_norm = True
    probs_bias = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        n_mtp = c.integer(cfg, "num_nextn_predict_layers", default=0)
        n_all = n + n_mtp
        types = cfg.get("layer_types") or []
        if not isinstance(types, list) or len(types) < n:
            raise BadConfig(f"step3p5 needs layer_types for its {n} layers, got {types!r}")
        types = [str(t) for t in types[:n_all]] + ["full_attention"] * (n_all - len(types))
        hd = c.integer(cfg, "head_dim")
        n_head = c.integer(cfg, "num_attention_heads")
        n_kv = c.integer(cfg, "num_attention_groups")
        other = cfg.get("attention_other_setting") or {}
        if c.integer(other, "head_dim", default=hd) != hd:
            raise BadConfig("step3p5 with a different sliding-layer head_dim is not modelled")
        full = Attention(AttnKind.FULL, n_head, n_kv, hd, hd)
        swa = Attention(
            AttnKind.SWA,
            c.integer(other, "num_attention_heads", default=n_head),
            c.integer(other, "num_attention_groups", default=n_kv),
            hd,
            hd,
            window=c.integer(cfg, "sliding_window"),
        )
        dense = c.dense(cfg)
        n_ff_exp = c.integer(cfg, "moe_intermediate_size")
        n_ff_shexp = c.integer(cfg, "share_expert_dim", default=n_ff_exp)
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "moe_num_experts"),
            n_expert_used=c.integer(cfg, "moe_top_k"),
            n_ff_exp=n_ff_exp,
            n_shared=1 if n_ff_shexp else 0,
            n_ff_shexp=n_ff_shexp,
        )
        moe_layers = _moe_layers(cfg, n_all)
        layers = [
            Layer(swa if t == "sliding_attention" else full, moe if il in moe_layers else dense)
            for il, t in enumerate(types)
        ]
        flags = {"rope_freqs"} if _rope_type(cfg) == "llama3" else set()
        if cfg.get("use_head_wise_attn_gate"):
            flags.add("head_gate")
        if not cfg.get("use_qk_norm", True):
            raise BadConfig("step3p5 without q/k norms is not modelled")
        return c.base(cfg, self.arch, layers[:n], mtp_layers=tuple(layers[n:]), flags=frozenset(flags))

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        """Q/K/V/O of the layer's own head count, per-head q/k norms and the head-wise gate
        `attn_gate` {n_embd, n_head} (`llama_model_step35::load_arch_tensors`)."""
        layout.gqa(b, p, il, a, spec.n_embd, role, qk_norm=True)
        if spec.has("head_gate"):
            b.add(f"{p}.attn_gate.weight", (spec.n_embd, a.n_head), role, il)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        layout.ffn(b, p, il, layer.ffn, spec.n_embd, mtp, probs_bias=True)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        """An MTP block also keeps the checkpoint's per-block LM head (`shared_head.output`). The
        loader creates only attn_norm, Q/K/V/O, ffn_norm, eh_proj, enorm and hnorm of an MTP block
        with the flags that skip them when no MTP draft runs; the rest it loads regardless."""
        start = len(b.out)
        super().block(b, spec, il, layer, mtp, own_head=False)
        if not mtp:
            return
        b.add(f"blk.{il}.nextn.shared_head_head.weight", (spec.n_embd, spec.n_vocab), Role.MTP, il)
        layout.keep_loaded_without_mtp(b, start, _MTP_SKIPPABLE)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """Step35Model.set_gguf_parameters: per-layer head counts and SWA pattern over block_count,
        no rope dimension (the loader halves head_dim for full layers), no shared-expert count."""
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        layers = spec.layers + spec.mtp_layers[: inv.mtp_kept]
        kv[".attention.head_count"] = [la.attn.n_head for la in layers]
        kv[".attention.head_count_kv"] = [la.attn.n_head_kv for la in layers]
        kv[".attention.sliding_window_pattern"] = [la.attn.kind is AttnKind.SWA for la in layers]
        kv.pop(".rope.dimension_count", None)
        kv.pop(".expert_shared_count", None)
        kv[".expert_gating_func"] = 2  # moe_router_activation "sigmoid"
        kv[".leading_dense_block_count"] = next(
            (i for i, la in enumerate(spec.layers) if la.ffn.kind is FFNKind.MOE), spec.n_layer
        )
        kv[".moe_every_n_layers"] = 1
        return kv
