"""DeepSeek sparse attention (DSA): DeepSeek-V3.2 (`deepseek32`) and GLM-5/5.1/5.2 (`glm-dsa`).

Both are the DeepSeek-V3 trunk (MLA, leading dense blocks, routed + shared experts with a sigmoid
router) plus a lightning indexer per layer (`self_attn.indexer.*`) that picks the top-k cached tokens
each query attends to. The pinned converter (`conversion/deepseek.py` DeepseekV32Model,
`conversion/glm.py` GlmMoeDsaModel, both DeepseekV2Model subclasses) keeps the appended NextN/MTP
block (`--no-mtp` drops it) and writes the indexer keys `attention.indexer.{head_count,key_length,
top_k}`; GLM-5.2 adds `attention.indexer.types` (its "shared" layers carry no indexer and reuse the
top-k of the last "full" one). llama.cpp keeps the indexer keys in a second K-only cache next to the
MLA latent cache (`llama_kv_cache_dsa`).
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.families.deepseek2 import DeepSeek2
from moeplan.arch.family import GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.spec import Attention, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig


def with_indexer(a: Attention, cfg: Config) -> Attention:
    """The layer's attention with the config's lightning indexer (`index_n_heads`, `index_head_dim`,
    `index_topk`)."""
    return dataclasses.replace(
        a,
        indexer_heads=c.integer(cfg, "index_n_heads"),
        indexer_head_dim=c.integer(cfg, "index_head_dim"),
        indexer_top_k=c.integer(cfg, "index_topk"),
    )


def _replace_attn(layers: tuple[Layer, ...], attn: list[Attention]) -> tuple[Layer, ...]:
    return tuple(dataclasses.replace(la, attn=a) for la, a in zip(layers, attn, strict=True))


class DeepSeek32(DeepSeek2):
    arch = "deepseek32"
    model_types = ("deepseek_v32",)
    mtp_kept = True  # DeepseekV32Model: skip_mtp = False, block_count += num_nextn_predict_layers
    # The MTP block's own embedding and head copies (model.layers.61.embed_tokens /
    # shared_head.head) are written too (blk.61.nextn.embed_tokens / shared_head_head).
    mtp_head_in_gguf = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        spec = super().spec_from_config(cfg)
        layers = _replace_attn(spec.layers, [with_indexer(la.attn, cfg) for la in spec.layers])
        mtp = _replace_attn(spec.mtp_layers, [with_indexer(la.attn, cfg) for la in spec.mtp_layers])
        return dataclasses.replace(spec, layers=layers, mtp_layers=mtp)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """The MLA trunk as the generic reader sees it, plus the indexer keys: a layer has an indexer
        (and an indexer key cache) where `indexer_full` says so and its tensors are in the file; every
        layer attends to the top-k (`load_arch_hparams`, `llama_model::create_memory` filter_lid)."""
        spec = generic_spec(hp)
        heads = hp.integer("attention.indexer.head_count")
        head_dim = hp.integer("attention.indexer.key_length")
        top_k = hp.integer("attention.indexer.top_k")
        full = self.indexer_full(hp, spec.n_layer)

        def one(il: int, la: Layer) -> Layer:
            has = (il >= spec.n_layer or full[il]) and hp.has(f"blk.{il}.indexer.attn_k.weight")
            a = dataclasses.replace(
                la.attn, indexer_heads=heads if has else 0, indexer_head_dim=head_dim if has else 0
            )
            return dataclasses.replace(la, attn=dataclasses.replace(a, indexer_top_k=top_k))

        layers = tuple(one(il, la) for il, la in enumerate(spec.layers))
        mtp = tuple(one(spec.n_layer + k, la) for k, la in enumerate(spec.mtp_layers))
        return dataclasses.replace(spec, layers=layers, mtp_layers=mtp)

    def indexer_full(self, hp: GGUFHParams, n_layer: int) -> list[bool]:
        """Which decoder layers run a full indexer: all of them (DeepSeek-V3.2)."""
        return [True] * n_layer

    def keeps_mtp(self, spec: ModelSpec) -> bool:
        return self.mtp_kept  # every DSA converter class keeps it (DeepSeek2 keeps it per model_type)

    def mtp_head_written(self, spec: ModelSpec) -> bool:
        return self.mtp_head_in_gguf

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        layout.mla(b, p, il, a, spec.n_embd, role)
        layout.dsa_indexer(b, p, il, a, spec.n_embd, role)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        a = next(la.attn for la in (*inv.spec.layers, *inv.spec.mtp_layers) if la.attn.indexer_heads)
        kv[".attention.indexer.head_count"] = a.indexer_heads
        kv[".attention.indexer.key_length"] = a.indexer_head_dim
        kv[".attention.indexer.top_k"] = a.indexer_top_k
        return kv


class GlmDsa(DeepSeek32):
    """GLM-5 / 5.1 (an indexer on every layer) and GLM-5.2 (`indexer_types`: "full" or "shared").
    The checkpoint's MTP block has no embedding/head copies and always its own indexer."""

    arch = "glm-dsa"
    model_types = ("glm_moe_dsa",)
    mtp_own_head = False
    mtp_head_in_gguf = False

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        base = DeepSeek2.spec_from_config(self, cfg)
        types = cfg.get("indexer_types")
        kinds = ["full"] * base.n_layer if types is None else types
        if not isinstance(kinds, list) or len(kinds) != base.n_layer or set(kinds) - {"full", "shared"}:
            raise BadConfig(f"indexer_types must give 'full' or 'shared' for each of {base.n_layer} layers")
        top_k = c.integer(cfg, "index_topk")
        attn = [
            with_indexer(la.attn, cfg) if k == "full" else dataclasses.replace(la.attn, indexer_top_k=top_k)
            for la, k in zip(base.layers, kinds, strict=True)
        ]
        mtp = _replace_attn(base.mtp_layers, [with_indexer(la.attn, cfg) for la in base.mtp_layers])
        flags = base.flags | ({"indexer_types"} if types is not None else set())
        return dataclasses.replace(base, layers=_replace_attn(base.layers, attn), mtp_layers=mtp, flags=flags)

    def indexer_full(self, hp: GGUFHParams, n_layer: int) -> list[bool]:
        """`attention.indexer.types`, else every layer when trained under 1M tokens (GLM-5 / 5.1), else
        the GLM-5.2 pattern llama.cpp hard-codes (layers 0, 1, then every 4th from 2)."""
        types = hp.flags("attention.indexer.types", n_layer)
        if types is not None:
            return types
        if hp.integer("context_length", 0) < 1048576:
            return [True] * n_layer
        return [il < 2 or (il - 2) % 4 == 0 for il in range(n_layer)]

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        if inv.spec.has("indexer_types"):  # GlmMoeDsaModel writes it only when the config has it
            kv[".attention.indexer.types"] = [bool(la.attn.indexer_heads) for la in inv.spec.layers]
        return kv
