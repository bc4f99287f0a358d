"""OLMo 2 and Olmo 3 (`Olmo2ForCausalLM`, `Olmo3ForCausalLM`; llama.cpp `olmo2`): a dense decoder with
norms after the attention and the FFN (none before them), q/k RMS norms over the whole projection width,
an untied head, and on Olmo 3 sliding-window attention on three layers of every four.

From the pinned build (11434):
- conversion/olmo.py Olmo2Model (both HF classes): the plain TextModel tensors; with a `sliding_window`
  in the config it writes that window and `sliding_window_pattern` from `layer_types` (else every
  layer but each fourth slides); OLMo 2 configs have no window;
- src/models/olmo2.cpp `load_arch_tensors`: attn_q/k/v, attn_output {n_embd, n_embd} (so n_head x
  head_dim must equal n_embd), attn_q_norm {n_embd}, attn_k_norm {n_head_kv x head_dim},
  post_attention_norm, ffn_gate/up/down, post_ffw_norm, and a required `output`;
  `load_arch_hparams`: a window turns on `load_swa_pattern(ml, 4)`.
"""

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import GGUFValue, PostNormFamily
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
from moeplan.arch.spec import Attention, AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, UnsupportedArchitecture

SWA_PERIOD = 4  # load_swa_pattern(ml, 4) in src/models/olmo2.cpp; the converter's default pattern too


class Olmo2(PostNormFamily):
    arch = "olmo2"
    model_types = ("olmo2", "olmo3")
    query_width_is_embd = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("tie_word_embeddings"):
            raise UnsupportedArchitecture("olmo2 with tied embeddings: olmo2.cpp requires output.weight")
        n = c.integer(cfg, "num_hidden_layers")
        window = c.integer(cfg, "sliding_window", default=0)
        sliding = [bool(window) and (il + 1) % SWA_PERIOD != 0 for il in range(n)]
        types = c.layer_types(cfg, n, ["sliding_attention" if s else "full_attention" for s in sliding])
        if not window and "sliding_attention" in types:
            raise BadConfig("olmo2: layer_types names sliding layers but the config has no sliding_window")
        full = c.gqa(cfg)
        c.check_query_width(cfg, full)
        swa = c.gqa(cfg, AttnKind.SWA, window)
        layers = [Layer(swa if t == "sliding_attention" else full, c.dense(cfg)) for t in types]
        return c.base(cfg, self.arch, layers)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """olmo2.cpp `load_arch_hparams`: with a window, the pattern array, else every fourth layer full."""
        if not hp.integer("attention.sliding_window", 0):
            return generic_spec(hp)
        return generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, SWA_PERIOD))

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        layout.gqa(b, p, il, a, spec.n_embd, role)
        layout.projection_qk_norms(b, p, il, a)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        if ".attention.sliding_window" in kv:  # Olmo2Model.set_gguf_parameters writes both with a window
            kv[".attention.sliding_window_pattern"] = [la.attn.kind is AttnKind.SWA for la in inv.spec.layers]
        return kv
