"""Cohere2 (Command-R7B, Command-A): Cohere's parallel block (one LayerNorm feeds attention and FFN,
whose outputs join the residual together: no FFN norm), sliding-window attention with RoPE on three
layers of every four and full attention without positions on the fourth, tied embeddings, scaled
logits. `CohereParallel` is what this and Cohere2 MoE (cohere2moe.py) share.

From the pinned build (11434):
- conversion/command_r.py Cohere2Model: writes `logit_scale`, `sliding_window`, the rope width
  `rotary_pct x head_dim`, and drops the (zero) biases; it writes no sliding pattern;
- src/models/cohere2.cpp `load_arch_hparams`: `load_swa_pattern(ml, 4)` (the last layer of each four
  is full), the window, logit scale and LayerNorm epsilon (all required); `load_arch_tensors`:
  attn_norm, Q {n_embd, n_embd}, K/V, O, gate/up/down, output_norm, and token_embd as the output
  (an `output.weight` the checkpoint's own head would add is not loaded: the file would not load).
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, full_layers_without_rope, generic_spec, swa_pattern
from moeplan.arch.spec import AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, UnsupportedArchitecture

SWA_PERIOD = 4  # load_swa_pattern(ml, 4) in src/models/cohere2.cpp


class CohereParallel(Family):
    """Cohere's parallel block and scaled logits, shared by cohere2 and cohere2moe."""

    def ffn_norms(self, b: Builder, p: str, il: int, e: int, role: Role) -> None:
        """The parallel block has no norm of its own before the FFN."""

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        # Both loaders require a logit scale; it scales the logits only (no tensor, cache or buffer
        # depends on it), so a config without one is written unscaled.
        kv[".logit_scale"] = dict(inv.spec.gguf_scalars).get(".logit_scale", 1.0)
        return kv


def logit_scale(cfg: Config) -> tuple[tuple[str, float], ...]:
    """The `logit_scale` both converters write (`add_logit_scale`), as a GGUF scalar of the spec."""
    return () if cfg.get("logit_scale") is None else ((".logit_scale", c.number(cfg, "logit_scale")),)


class Cohere2(CohereParallel):
    arch = "cohere2"
    model_types = ("cohere2",)
    query_width_is_embd = True  # cohere2.cpp sizes wq and wo {n_embd, n_embd}

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("tie_word_embeddings") is False:
            raise UnsupportedArchitecture(
                "cohere2 with an untied lm_head: cohere2.cpp loads token_embd as the output"
            )
        if c.number(cfg, "rotary_pct", default=1.0) != 1.0:
            raise UnsupportedArchitecture("cohere2 with a partial rotary_pct is not modelled")
        n = c.integer(cfg, "num_hidden_layers")
        window = c.integer(cfg, "sliding_window")
        # llama.cpp slides on every layer but the last of each four whatever the config says (the
        # converter writes no pattern), so a config whose layers differ is refused.
        fixed = [
            "full_attention" if il % SWA_PERIOD == SWA_PERIOD - 1 else "sliding_attention" for il in range(n)
        ]
        period = c.integer(cfg, "sliding_window_pattern", default=SWA_PERIOD)
        if c.layer_types(cfg, n, fixed) != fixed or period != SWA_PERIOD:
            raise BadConfig(f"cohere2: llama.cpp runs full attention on every {SWA_PERIOD}th layer only")
        full = c.gqa(cfg, rope=False)
        c.check_query_width(cfg, full)
        swa = c.gqa(cfg, AttnKind.SWA, window)
        layers = [Layer(full if t == "full_attention" else swa, c.dense(cfg)) for t in fixed]
        spec = c.base(cfg, self.arch, layers, gguf_scalars=logit_scale(cfg))
        # Cohere2Config defaults to tied embeddings.
        return dataclasses.replace(spec, tied_embeddings=True)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """cohere2.cpp `load_arch_hparams`: the pattern key if any, else full attention every 4th layer;
        the graph ropes only the sliding layers."""
        return full_layers_without_rope(generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, SWA_PERIOD)))

    def tail(self, b: Builder, spec: ModelSpec) -> None:
        b.add("output_norm.weight", (spec.n_embd,), Role.NORM)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """Cohere2Model.set_gguf_parameters: the LayerNorm epsilon (cohere2.cpp requires it) beside the
        shared keys."""
        kv = super().gguf_metadata(inv)
        del kv[".attention.layer_norm_rms_epsilon"]
        kv[".attention.layer_norm_epsilon"] = 1e-5
        return kv
