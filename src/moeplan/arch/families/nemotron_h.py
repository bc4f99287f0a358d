"""NVIDIA Nemotron-H: llama.cpp `nemotron_h` (dense: Nemotron-H 4B-56B, Nemotron Nano 2, Nemotron-3
Nano 4B) and `nemotron_h_moe` (Nemotron-3 Nano / Super / Ultra, Nemotron-3.5).

Every block is exactly one of a Mamba-2 mixer, a GQA attention mixer (no RoPE) or an FFN, named by
`hybrid_override_pattern` (M / * / `-` for a dense relu² MLP, E for an MoE) or `layers_block_type`
(mamba / attention / moe); a Mamba-2 or attention block has no FFN and an FFN block no sequence
mixer (conversion/nemotron.py `NemotronHModel`, src/models/nemotron-h.cpp `load_arch_tensors`, one
loader for both architectures). The converter picks `nemotron_h_moe` when the config has
`num_experts_per_tok`. The dense MLP is up/down only (relu², no gate). The MoE is DeepSeek-style
(sigmoid router with `e_score_correction_bias`) with non-gated relu² experts and one shared
expert: only up/down stacks exist. Nemotron-3 Super/Ultra route their experts in a latent width
(`moe_latent_size`, `ffn_latent_down`/`ffn_latent_up`). The converter keeps the MTP head
(`num_nextn_predict_layers`, one block) as `blk.{n_layer}`: an attention sub-layer plus an MoE
sub-layer folded into one block.
"""

from typing import ClassVar

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, mamba_metadata
from moeplan.arch.from_gguf import GGUFHParams, spec_of_blocks
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, BadGGUF, UnsupportedArchitecture

NO_MIXER = Attention(AttnKind.NONE, 0, 0, 0, 0)
NO_FFN = FFN(FFNKind.NONE)
# The converter writes this context length for hybrids without RoPE (GraniteHybridModel
# `set_gguf_parameters`: `add_context_length(2**20)` when `use_rope` is false).
NOPE_HYBRID_CONTEXT = 2**20

_SSM = {"M", "mamba", "linear_attention"}
_ATTN = {"*", "attention", "full_attention"}
_MOE = {"E", "moe"}
_MLP = {"-"}


def mamba2(cfg: Config, n_heads: str, head_dim: str, state: str, groups: str, conv: str) -> Attention:
    """A Mamba-2 mixer in the LINEAR fields: groups x d_state are the B/C "keys", heads x head_dim
    the values (d_inner); `Family.recurrent_state` then is llama_hparams::n_embd_r / n_embd_s."""
    return Attention(
        AttnKind.LINEAR,
        0,
        0,
        0,
        0,
        conv_kernel=c.integer(cfg, conv),
        linear_k_heads=c.integer(cfg, groups),
        linear_k_head_dim=c.integer(cfg, state),
        linear_v_heads=c.integer(cfg, n_heads),
        linear_v_head_dim=c.integer(cfg, head_dim),
    )


def mamba2_tensors(b: Builder, p: str, il: int, a: Attention, e: int, *, conv_bias: bool) -> None:
    """A Mamba-2 mixer as conversion/mamba.py `Mamba2Model.modify_tensors` writes it: in_proj
    {E, 2·d_inner + 2·n_group·d_state + n_head}, the squeezed conv1d {d_conv, conv_dim}, A and D
    as {1, n_head} (no `.weight` suffix), the grouped norm {d_inner / n_group, n_group}."""
    d_inner = a.linear_v_heads * a.linear_v_head_dim
    n_head, n_group = a.linear_v_heads, a.linear_k_heads
    conv_dim = d_inner + 2 * n_group * a.linear_k_head_dim
    b.add(f"{p}.ssm_in.weight", (e, conv_dim + d_inner + n_head), Role.SSM, il)
    b.add(f"{p}.ssm_conv1d.weight", (a.conv_kernel, conv_dim), Role.SSM, il)
    if conv_bias:
        b.add(f"{p}.ssm_conv1d.bias", (conv_dim,), Role.SSM, il)
    b.add(f"{p}.ssm_dt.bias", (n_head,), Role.SSM, il)
    b.add(f"{p}.ssm_a", (1, n_head), Role.SSM, il)
    b.add(f"{p}.ssm_d", (1, n_head), Role.SSM, il)
    b.add(f"{p}.ssm_norm.weight", (d_inner // n_group, n_group), Role.NORM, il)
    b.add(f"{p}.ssm_out.weight", (d_inner, e), Role.SSM, il)


def mamba2_activations(a: Attention, n_ubatch: int, n_embd: int, n_seq: int) -> int:
    """The live F32 tensors at the peak of `llm_build_mamba_base::build_mamba2_layer` (ggml-alloc
    frees a tensor after its last use): the in_proj output zxBCdt (z is read last), the convolved
    xBC (x is read by the D skip), the scan output (y plus every sequence's new state) and y·D,
    next to the residual row."""
    d_inner, n_head = a.linear_v_heads * a.linear_v_head_dim, a.linear_v_heads
    conv_dim = d_inner + 2 * a.linear_k_heads * a.linear_k_head_dim
    per_token = (conv_dim + d_inner + n_head) + conv_dim + 2 * d_inner + n_embd
    return 4 * (n_ubatch * per_token + max(1, n_seq) * a.linear_k_head_dim * d_inner)


class NemotronH(Family):
    """The dense architecture, and the one reader of every `nemotron_h` config (MoE ones become
    `nemotron_h_moe` specs, as the converter decides)."""

    arch = "nemotron_h"
    model_types: ClassVar[tuple[str, ...]] = ("nemotron_h",)

    # ---- config.json ---------------------------------------------------------------------------

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        is_moe = "num_experts_per_tok" in cfg  # NemotronHModel.__init__: has_moe_params
        pattern = cfg.get("hybrid_override_pattern") or cfg.get("layers_block_type")
        if not pattern:
            raise BadConfig("a nemotron_h config needs hybrid_override_pattern or layers_block_type")
        if not isinstance(pattern, str) and not isinstance(pattern, list):
            raise BadConfig(f"the Nemotron-H block pattern must be a string or a list, got {pattern!r}")
        if isinstance(pattern, str) and ("-" if is_moe else "E") in pattern:
            raise BadConfig(
                "an MoE Nemotron-H pattern marks its FFN blocks E, not '-'"
                if is_moe
                else "a dense Nemotron-H pattern marks its MLP blocks '-' (E needs the MoE fields)"
            )
        if not is_moe and not isinstance(pattern, str):
            # the converter finds dense MLP blocks only as '-' in a pattern string (_MLP_LAYER_TYPES)
            raise UnsupportedArchitecture(
                "a dense Nemotron-H needs hybrid_override_pattern, not layers_block_type"
            )
        if "num_hidden_layers" in cfg and cfg["num_hidden_layers"] != len(pattern):
            raise BadConfig(f"{len(pattern)} block types for {cfg['num_hidden_layers']} layers")
        if not cfg.get("use_conv_bias", True) or cfg.get("mamba_proj_bias") or cfg.get("attention_bias"):
            raise BadConfig("only Nemotron-H with conv1d bias and no projection biases is modelled")
        if cfg.get("mlp_bias"):
            raise BadConfig("only Nemotron-H without MLP biases is modelled")
        ssm = mamba2(cfg, "mamba_num_heads", "mamba_head_dim", "ssm_state_size", "n_groups", "conv_kernel")
        hd = c.integer(cfg, "head_dim", "attention_head_dim")  # the converter's key_length
        n_head = c.integer(cfg, "num_attention_heads")
        attn = Attention(AttnKind.FULL, n_head, c.integer(cfg, "num_key_value_heads"), hd, hd)
        ffn = _moe(cfg) if is_moe else c.dense(cfg)
        layers = []
        for t in pattern:
            if t in _SSM:
                layers.append(Layer(ssm, NO_FFN))
            elif t in _ATTN:
                layers.append(Layer(attn, NO_FFN))
            elif t in (_MOE if is_moe else _MLP):
                layers.append(Layer(NO_MIXER, ffn))
            else:
                raise BadConfig(f"unknown Nemotron-H block type {t!r}")
        if not is_moe:  # the converter keeps an MTP head only on the MoE architecture
            return c.base(cfg, self.arch, layers)
        # the MTP head: one attention + MoE block (mtp_hybrid_override_pattern "*E")
        mtp = c.mtp(cfg, Layer(attn, ffn))
        if len(mtp) > 1:
            raise BadConfig("the converter supports one Nemotron-H MTP block (num_nextn_predict_layers 1)")
        return c.base(cfg, NemotronHMoe.arch, layers, mtp_layers=mtp)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """nemotron-h.cpp `load_arch_hparams`: a trunk block is recurrent iff head_count_kv and
        feed_forward_length are both 0 there, attention iff only feed_forward_length is 0, else an
        FFN-only block (MoE where it has expert stacks, else the dense MLP); the trailing NextN
        block carries attention and the MoE."""
        n_all, n_nextn = hp.n_layer_all, hp.n_nextn
        n = n_all - n_nextn
        e = hp.integer("embedding_length")
        n_head = hp.per_layer("attention.head_count", n_all, [0] * n_all)
        n_head_kv = hp.per_layer("attention.head_count_kv", n_all, n_head)
        n_ff = hp.per_layer("feed_forward_length", n_all, [0] * n_all)
        n_used = hp.per_layer("expert_used_count", n_all, [0] * n_all)
        d_inner, n_ssm_head = hp.integer("ssm.inner_size"), hp.integer("ssm.time_step_rank")
        if not n_ssm_head or d_inner % n_ssm_head:
            raise BadGGUF(
                f"{hp.name}: ssm.inner_size {d_inner} is not a multiple of time_step_rank {n_ssm_head}"
            )
        ssm = Attention(
            AttnKind.LINEAR,
            0,
            0,
            0,
            0,
            conv_kernel=hp.integer("ssm.conv_kernel"),
            linear_k_heads=hp.integer("ssm.group_count"),
            linear_k_head_dim=hp.integer("ssm.state_size"),
            linear_v_heads=n_ssm_head,
            linear_v_head_dim=d_inner // n_ssm_head,
        )

        def attention(il: int) -> Attention:
            hd_k = hp.integer("attention.key_length", e // n_head[il])
            hd_v = hp.integer("attention.value_length", e // n_head[il])
            return Attention(AttnKind.FULL, n_head[il], n_head_kv[il], hd_k, hd_v)

        def ffn(il: int) -> FFN:
            up, shexp = hp.shape(f"blk.{il}.ffn_up_exps.weight"), hp.shape(f"blk.{il}.ffn_up_shexp.weight")
            if up is None and hp.has(f"blk.{il}.ffn_up.weight"):
                return FFN(FFNKind.DENSE, n_ff=n_ff[il])
            if up is None or shexp is None:
                raise UnsupportedArchitecture(f"{hp.name}: blk.{il} is an FFN block without the MoE tensors")
            return FFN(
                FFNKind.MOE,
                n_expert=up[2],
                n_expert_used=n_used[il],
                n_ff_exp=up[1],
                n_shared=hp.integer("expert_shared_count", 1),
                n_ff_shexp=shexp[1],
                n_latent=hp.integer("moe_latent_size", 0),
            )

        layers = []
        for il in range(n_all):
            if il < n and n_head_kv[il] == 0 and n_ff[il] == 0:
                layers.append(Layer(ssm, NO_FFN))
            elif il < n and n_ff[il] == 0:
                layers.append(Layer(attention(il), NO_FFN))
            elif il < n:
                layers.append(Layer(NO_MIXER, ffn(il)))
            else:
                layers.append(Layer(attention(il), ffn(il)))
        return spec_of_blocks(hp, layers)

    # ---- tensors -------------------------------------------------------------------------------

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        """One block of one kind (src/models/nemotron-h.cpp `load_arch_tensors`); the MTP block folds
        mtp.layers.0 (NextN fusion + attention) and mtp.layers.1 (MoE, its norm written as
        post_attention_norm, final_layernorm as nextn.shared_head_norm)."""
        p, e = f"blk.{il}", spec.n_embd
        if mtp:
            layout.nextn(b, p, il, e, spec.n_vocab)
        b.add(f"{p}.attn_norm.weight", (e,), layout.mtp_or(Role.NORM, mtp), il)
        a = layer.attn
        if a.kind is AttnKind.LINEAR:
            mamba2_tensors(b, p, il, a, e, conv_bias=True)  # use_conv_bias (checked)
        elif a.kind is not AttnKind.NONE:
            layout.gqa(b, p, il, a, e, layout.mtp_or(Role.ATTN, mtp))
        if layer.ffn.kind is FFNKind.MOE:
            if mtp:
                b.add(f"{p}.post_attention_norm.weight", (e,), Role.MTP, il)
            self.ffn(b, spec, p, il, layer, mtp)
        elif layer.ffn.kind is FFNKind.DENSE:  # the relu² MLP: up and down only
            layout.dense_ffn(b, p, il, layer.ffn, e, Role.DENSE_FFN, gated=False)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        """Router + selection bias, the latent projections, up/down expert stacks in the latent
        width, and the shared expert (relu², no gate) in the model width."""
        f, e = layer.ffn, spec.n_embd
        moe_e = f.n_latent or e
        layout.router(b, p, il, f, e, layout.mtp_or(Role.ROUTER, mtp), probs_bias=self.probs_bias)
        role = layout.mtp_or(Role.EXPERT, mtp)
        if f.n_latent:
            b.add(f"{p}.ffn_latent_down.weight", (e, f.n_latent), role, il)
            b.add(f"{p}.ffn_latent_up.weight", (f.n_latent, e), role, il)
        b.add(f"{p}.ffn_up_exps.weight", (moe_e, f.n_ff_exp, f.n_expert), role, il)
        b.add(f"{p}.ffn_down_exps.weight", (f.n_ff_exp, moe_e, f.n_expert), role, il)
        shexp = layout.mtp_or(Role.SHARED_EXPERT, mtp)
        b.add(f"{p}.ffn_up_shexp.weight", (e, f.n_ff_shexp), shexp, il)
        b.add(f"{p}.ffn_down_shexp.weight", (f.n_ff_shexp, e), shexp, il)

    def recurrent_activations(self, a: Attention, n_ubatch: int, n_embd: int, n_seq: int) -> int:
        return mamba2_activations(a, n_ubatch, n_embd, n_seq)

    # ---- GGUF metadata -------------------------------------------------------------------------

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """NemotronHModel / GraniteHybridModel `set_gguf_parameters`: per-block head_count_kv and
        feed_forward_length arrays (llama.cpp's loader tells the block kinds from them: recurrent
        where both are 0, attention where only n_ff is 0), the Mamba-2 sizes, no RoPE context.
        Router scaling / normalisation floats (optional to the loader) are not part of the spec."""
        spec = inv.spec
        blocks = (*spec.layers, *spec.mtp_layers[: inv.mtp_kept])
        attn = next(la.attn for la in blocks if la.attn.kind is AttnKind.FULL)
        ssm = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.LINEAR)
        kv: dict[str, GGUFValue] = {
            ".context_length": NOPE_HYBRID_CONTEXT,
            ".embedding_length": spec.n_embd,
            ".block_count": inv.block_count,
            ".vocab_size": spec.n_vocab,
            ".feed_forward_length": [la.ffn.n_ff_exp or la.ffn.n_ff for la in blocks],
            ".attention.head_count": attn.n_head,
            ".attention.head_count_kv": [la.attn.n_head_kv for la in blocks],
            ".attention.key_length": attn.head_dim_k,
            ".attention.value_length": attn.head_dim_v,
            ".attention.layer_norm_rms_epsilon": 1e-5,
            ".attention.layer_norm_epsilon": 1e-5,
            ".rope.freq_base": 10000.0,
            ".rope.dimension_count": attn.head_dim_k,
            ".rope.scaling.finetuned": False,
            **mamba_metadata(ssm),
        }
        moe = spec.moe_ffn
        if moe is None:  # nemotron_h: the dense MLP widths above are all it needs
            return kv
        kv |= {
            ".expert_count": moe.n_expert,
            ".expert_used_count": moe.n_expert_used,
            ".expert_feed_forward_length": moe.n_ff_exp,
            ".expert_shared_feed_forward_length": moe.n_ff_shexp,
            ".expert_shared_count": moe.n_shared,
        }
        if moe.n_latent:
            kv[".moe_latent_size"] = moe.n_latent
        if inv.mtp_kept:
            kv[".nextn_predict_layers"] = inv.mtp_kept
        return kv


class NemotronHMoe(NemotronH):
    arch = "nemotron_h_moe"
    model_types = ()  # NemotronH reads the configs and picks the architecture
    mtp_kept = True  # NemotronHModel: supports_mtp_export, kept unless --no-mtp
    probs_bias = True


def _moe(cfg: Config) -> FFN:
    return FFN(
        FFNKind.MOE,
        n_expert=c.integer(cfg, "n_routed_experts"),
        n_expert_used=c.integer(cfg, "num_experts_per_tok"),
        n_ff_exp=c.integer(cfg, "moe_intermediate_size"),
        n_shared=c.integer(cfg, "n_shared_experts"),
        n_ff_shexp=c.integer(cfg, "moe_shared_expert_intermediate_size"),
        n_latent=c.integer(cfg, "moe_latent_size", default=0),
    )
