"""IBM Granite-4.0-H (GraniteMoeHybridForCausalLM): llama.cpp `granitehybrid`.

Every layer has an FFN (MoE with a shared expert, or a dense SwiGLU when `num_local_experts` is 0)
after one sequence mixer: a Mamba-2 block or, where `layer_types` says "attention", a GQA block
without RoPE (conversion/granite.py `GraniteHybridModel`, src/models/granite-hybrid.cpp
`load_arch_tensors`). llama.cpp tells the kinds apart by `head_count_kv[il] == 0` and requires
d_inner = 2·n_embd. A config whose layers are all attention converts to `granite` (granite.py) or,
with experts, `granitemoe` (not modelled from this config).
"""

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.families.granite import Granite
from moeplan.arch.families.nemotron_h import NOPE_HYBRID_CONTEXT, mamba2, mamba2_activations, mamba2_tensors
from moeplan.arch.family import Family, GGUFValue, mamba_metadata
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, UnsupportedArchitecture


class GraniteHybrid(Family):
    arch = "granitehybrid"
    model_types = ("granitemoehybrid",)
    # granite-hybrid.cpp load_arch_tensors: GGML_ASSERT(2 * n_embd == d_inner)
    ssm_inner_per_embd = 2

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        types = c.layer_types(cfg, n, [])
        if not types:
            raise BadConfig("a granitemoehybrid config needs layer_types")
        if "mamba" not in types:
            if cfg.get("num_experts_per_tok"):
                raise UnsupportedArchitecture(
                    "an all-attention Granite-4.0 with experts (llama.cpp `granitemoe`)"
                )
            # GraniteHybridModel converts it to `granite`
            return Granite().spec_from_config(cfg)
        if set(types) - {"mamba", "attention"}:
            raise BadConfig(f"unknown Granite layer types {sorted(set(types) - {'mamba', 'attention'})}")
        if not cfg.get("mamba_conv_bias", True) or cfg.get("mamba_proj_bias") or cfg.get("attention_bias"):
            raise BadConfig("only Granite-4.0-H with conv1d bias and no projection biases is modelled")
        if cfg.get("position_embedding_type", "nope") != "nope":
            raise BadConfig("only Granite-4.0-H without RoPE (position_embedding_type nope) is modelled")
        ssm = mamba2(cfg, "mamba_n_heads", "mamba_d_head", "mamba_d_state", "mamba_n_groups", "mamba_d_conv")
        if ssm.linear_v_heads * ssm.linear_v_head_dim != 2 * c.integer(cfg, "hidden_size"):
            raise BadConfig(
                "llama.cpp's granitehybrid requires mamba_n_heads x mamba_d_head = 2 x hidden_size"
            )
        hd = c.integer(cfg, "hidden_size") // c.integer(
            cfg, "num_attention_heads"
        )  # converter drops head_dim
        attn = Attention(
            AttnKind.FULL,
            c.integer(cfg, "num_attention_heads"),
            c.integer(cfg, "num_key_value_heads"),
            hd,
            hd,
        )
        n_expert = c.integer(cfg, "num_local_experts", default=0)
        if n_expert:
            shexp = c.integer(cfg, "shared_intermediate_size", default=0)
            ffn = FFN(
                FFNKind.MOE,
                n_expert=n_expert,
                n_expert_used=c.integer(cfg, "num_experts_per_tok"),
                n_ff_exp=c.integer(cfg, "intermediate_size"),
                n_shared=1 if shexp else 0,
                n_ff_shexp=shexp,
            )
        else:  # the shared MLP is the dense FFN (GraniteMoeModel.modify_tensors: its width is
            # shared_intermediate_size, else intermediate_size)
            ffn = FFN(FFNKind.DENSE, n_ff=c.integer(cfg, "shared_intermediate_size", "intermediate_size"))
        layers = [Layer(attn if t == "attention" else ssm, ffn) for t in types]
        return c.base(cfg, self.arch, layers)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        p, e = f"blk.{il}", spec.n_embd
        b.add(f"{p}.attn_norm.weight", (e,), Role.NORM, il)
        if layer.attn.kind is AttnKind.LINEAR:
            mamba2_tensors(b, p, il, layer.attn, e, conv_bias=True)
        else:
            layout.gqa(b, p, il, layer.attn, e, Role.ATTN)
        b.add(f"{p}.ffn_norm.weight", (e,), Role.NORM, il)
        layout.ffn(b, p, il, layer.ffn, e, False)

    def recurrent_activations(self, a: Attention, n_ubatch: int, n_embd: int, n_seq: int) -> int:
        return mamba2_activations(a, n_ubatch, n_embd, n_seq)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """GraniteHybridModel `set_gguf_parameters`: per-layer head_count_kv (0 = Mamba-2),
        feed_forward_length = the expert width (the loader sizes the expert stacks with n_ff), the
        Mamba-2 sizes, rope off (`rope.scaling.finetuned` false) and context 2^20. The Granite
        multipliers (embedding/attention/residual/logit scales) are floats the spec does not keep."""
        spec = inv.spec
        attn = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.FULL)
        ssm = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.LINEAR)
        f = spec.layers[0].ffn
        kv: dict[str, GGUFValue] = {
            ".context_length": NOPE_HYBRID_CONTEXT,
            ".embedding_length": spec.n_embd,
            ".block_count": inv.block_count,
            ".vocab_size": spec.n_vocab,
            ".feed_forward_length": f.n_ff_exp if f.kind is FFNKind.MOE else f.n_ff,
            ".attention.head_count": attn.n_head,
            ".attention.head_count_kv": [la.attn.n_head_kv for la in spec.layers],
            ".attention.layer_norm_rms_epsilon": 1e-5,
            ".rope.freq_base": 10000.0,
            ".rope.dimension_count": attn.head_dim_k,
            ".rope.scaling.finetuned": False,
            **mamba_metadata(ssm),
        }
        if attn.head_dim_k * attn.n_head != spec.n_embd:  # the converter never needs it: the default holds
            kv[".attention.key_length"] = attn.head_dim_k
            kv[".attention.value_length"] = attn.head_dim_v
        if f.kind is FFNKind.MOE:
            kv[".expert_count"] = f.n_expert
            kv[".expert_used_count"] = f.n_expert_used
            if f.n_ff_shexp:
                kv[".expert_shared_feed_forward_length"] = f.n_ff_shexp
        return kv
