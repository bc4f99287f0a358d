"""EXAONE 4.0 (`Exaone4ForCausalLM`, llama.cpp `exaone4`): a dense GQA decoder with no norm before the
attention or the FFN (each output is normed before its residual add), per-head q/k RMS norms, a
llama3-style `rope_freqs` tensor, and on the 32B three sliding-window layers to one global layer that
runs without RoPE.

From the pinned build (11434):
- conversion/exaone.py Exaone4Model: the plain TextModel tensors, `rope_freqs` {head_dim/2} when the
  (full-attention) rope parameters are llama3-type; with a `sliding_window` it writes the window and
  `sliding_window_pattern` from `layer_types` or the "LLLG" string (as K-EXAONE's converter does);
- src/models/exaone4.cpp `load_arch_tensors`: q/k/v, attn_output {n_embd, n_embd} (so n_head x head_dim
  must equal n_embd), post_attention_norm, attn_q_norm / attn_k_norm {head_dim}, ffn_gate/up/down,
  post_ffw_norm, an optional output (else token_embd is reused); `load_arch_hparams` turns sliding
  windows on only for a 64-layer model (window 4096 unless the file says, `load_swa_pattern(ml, 4)`):
  any other depth (the 1.2B) attends to the whole context on every layer; the graph ropes the SWA layers
  only when there are any.
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.exaone_moe import exaone_layer_types
from moeplan.arch.family import GGUFValue, PostNormFamily
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
from moeplan.arch.spec import AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Inventory
from moeplan.errors import UnsupportedArchitecture

SWA_DEPTH = 64  # the only block count exaone4.cpp gives sliding windows (`hparams.n_layer() == 64`)
SWA_WINDOW = 4096  # its n_swa before the file's attention.sliding_window
SWA_PERIOD = 4  # load_swa_pattern(ml, 4)


class Exaone4(PostNormFamily):
    arch = "exaone4"
    model_types = ("exaone4",)
    qk_norm = True
    query_width_is_embd = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if c.integer(cfg, "num_nextn_predict_layers", default=0):
            raise UnsupportedArchitecture("exaone4 with NextN layers is not modelled")
        n = c.integer(cfg, "num_hidden_layers")
        full = c.gqa(cfg)
        c.check_query_width(cfg, full)
        if n == SWA_DEPTH:
            # without a sliding_window the converter writes no pattern and the loader's defaults apply
            windowed = cfg.get("sliding_window") is not None
            window = c.integer(cfg, "sliding_window") if windowed else SWA_WINDOW
            slides = (
                [t == "sliding_attention" for t in exaone_layer_types(cfg, n)]
                if windowed
                else [il % SWA_PERIOD < SWA_PERIOD - 1 for il in range(n)]
            )
            swa, nope = c.gqa(cfg, AttnKind.SWA, window), c.gqa(cfg, rope=False)
            attns = [swa if s else nope for s in slides]
        else:
            attns = [full] * n
        params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        rope = params.get("full_attention") or params  # the converter's full-attention rope parameters
        llama3 = str(rope.get("rope_type", rope.get("type", ""))).lower() == "llama3"
        flags = {"rope_freqs"} if llama3 else set()
        layers = [Layer(a, c.dense(cfg)) for a in attns]
        return c.base(cfg, self.arch, layers, flags=frozenset(flags))

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """exaone4.cpp `load_arch_hparams`: windows only at 64 blocks, where the global layers skip RoPE."""
        if hp.n_nextn:
            raise UnsupportedArchitecture(f"{hp.name}: exaone4 with NextN layers is not modelled")
        flags = frozenset({"rope_freqs"} if hp.has("rope_freqs.weight") else ())
        if hp.n_layer_all != SWA_DEPTH:
            return dataclasses.replace(generic_spec(hp, swa=lambda h, n: [False] * n), flags=flags)
        spec = generic_spec(
            hp,
            swa=lambda h, n: swa_pattern(h, n, SWA_PERIOD),
            window=hp.integer("attention.sliding_window", SWA_WINDOW),
        )
        layers = tuple(
            la if la.attn.kind is AttnKind.SWA else Layer(dataclasses.replace(la.attn, rope=False), la.ffn)
            for la in spec.layers
        )
        return dataclasses.replace(spec, layers=layers, flags=flags)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """Exaone4Model.set_gguf_parameters: with a window, the per-layer pattern too."""
        kv = super().gguf_metadata(inv)
        if ".attention.sliding_window" in kv:
            kv[".attention.sliding_window_pattern"] = [la.attn.kind is AttnKind.SWA for la in inv.spec.layers]
        return kv
