"""JetBrains Mellum2 (MellumForCausalLM, e.g. Mellum2-12B-A2.5B): the Qwen3-MoE block (per-head q/k
norms, softmax-routed experts with no shared expert) with sliding-window attention on the layers
`layer_types` marks and full attention on the others.

From the pinned build (11434):
- conversion/mellum.py `MellumModel`: `moe_intermediate_size` as the expert width; `sliding_window`
  and the per-layer `sliding_window_pattern` array (from `layer_types`) only when
  `use_sliding_window` is true or absent; the MTP head of training is not in the released weights
  (the converter maps no MTP tensor);
- src/models/mellum.cpp `load_arch_hparams`: with a window, `load_swa_pattern(ml, 4)` (the array,
  else the last layer of every four full); `load_arch_tensors`: every block needs a router and the
  expert stacks (no dense FFN), q/k norms, and an `output` matrix (no tying).
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.qwen3 import qwen_moe_ffn
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
from moeplan.arch.spec import AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Inventory
from moeplan.errors import BadConfig, UnsupportedArchitecture

SWA_PERIOD = 4  # load_swa_pattern(ml, 4) in src/models/mellum.cpp, when no array is written


class Mellum(Family):
    arch = "mellum"
    model_types = ("mellum",)
    qk_norm = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        mlp = cfg.get("mlp_layer_types")
        if mlp is not None and mlp != ["sparse"] * n:
            raise UnsupportedArchitecture(
                "mellum with dense layers: llama.cpp's loader needs experts on every layer"
            )
        if cfg.get("attention_bias"):
            raise UnsupportedArchitecture("mellum with attention biases: llama.cpp loads none")
        if cfg.get("tie_word_embeddings"):
            raise UnsupportedArchitecture("mellum with tied embeddings: llama.cpp requires output.weight")
        windowed = cfg.get("use_sliding_window") in (True, None) and cfg.get("sliding_window") is not None
        # MellumConfig: layer_types default to all full attention
        types = c.layer_types(cfg, n, ["full_attention"] * n) if windowed else ["full_attention"] * n
        if set(types) - {"full_attention", "sliding_attention"}:
            raise BadConfig(f"mellum: unknown layer types {sorted(set(types))}")
        window = c.integer(cfg, "sliding_window") if windowed else 0
        moe = qwen_moe_ffn(cfg, shared=False)
        layers = [
            Layer(c.gqa(cfg, AttnKind.SWA, window) if t == "sliding_attention" else c.gqa(cfg), moe)
            for t in types
        ]
        return c.base(cfg, self.arch, layers)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """mellum.cpp `load_arch_hparams`: a window makes the pattern array (else 3 sliding : 1 full)
        apply; no window, no sliding layers."""
        if not hp.integer("attention.sliding_window", 0):
            return generic_spec(hp, swa=lambda h, n: [False] * n)
        return generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, SWA_PERIOD))

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """MellumModel.set_gguf_parameters: the window and, with it, the per-layer pattern array."""
        kv = super().gguf_metadata(inv)
        if ".attention.sliding_window" in kv:
            kv[".attention.sliding_window_pattern"] = [la.attn.kind is AttnKind.SWA for la in inv.spec.layers]
        return kv
