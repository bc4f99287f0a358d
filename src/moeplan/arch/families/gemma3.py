"""Gemma 3: 5 sliding-window layers to 1 global, sandwich norms around attention and FFN, q/k norms,
tied embeddings."""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
from moeplan.arch.spec import AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Role


class Gemma3(Family):
    arch = "gemma3"
    model_types = ("gemma3", "gemma3_text")
    qk_norm = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        window = c.integer(cfg, "sliding_window", default=4096)
        pattern = c.integer(cfg, "sliding_window_pattern", default=6)
        default = ["sliding_attention" if (il + 1) % pattern else "full_attention" for il in range(n)]
        layers = [
            Layer(c.gqa(cfg, AttnKind.SWA, window) if t == "sliding_attention" else c.gqa(cfg), c.dense(cfg))
            for t in c.layer_types(cfg, n, default)
        ]
        spec = c.base(cfg, self.arch, layers)
        return ModelSpec(**{**spec.__dict__, "tied_embeddings": True})

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """gemma3.cpp `load_arch_hparams`: with a window, the sliding pattern defaults to 5:1."""
        if not hp.integer("attention.sliding_window", 0):
            return generic_spec(hp)
        return generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, 6))

    def ffn_norms(self, b: Builder, p: str, il: int, e: int, role: Role) -> None:
        b.add(f"{p}.post_attention_norm.weight", (e,), role, il)
        b.add(f"{p}.ffn_norm.weight", (e,), role, il)
        b.add(f"{p}.post_ffw_norm.weight", (e,), role, il)
