"""One module per llama.cpp architecture family; `FAMILIES` lists every class the registry serves."""

from moeplan.arch.families.afmoe import Afmoe
from moeplan.arch.families.bailingmoe2 import BailingMoe2
from moeplan.arch.families.bailingmoe3 import BailingMoe3
from moeplan.arch.families.cohere2 import Cohere2
from moeplan.arch.families.cohere2moe import Cohere2Moe
from moeplan.arch.families.deci import Deci
from moeplan.arch.families.deepseek2 import DeepSeek2
from moeplan.arch.families.deepseek4 import DeepSeek4
from moeplan.arch.families.dots1 import Dots1
from moeplan.arch.families.dots3note import Dots3Note
from moeplan.arch.families.dsa import DeepSeek32, GlmDsa
from moeplan.arch.families.ernie45 import Ernie45Moe
from moeplan.arch.families.exaone4 import Exaone4
from moeplan.arch.families.exaone_moe import ExaoneMoe
from moeplan.arch.families.gemma3 import Gemma3
from moeplan.arch.families.gemma3n import Gemma3n
from moeplan.arch.families.gemma4 import Gemma4
from moeplan.arch.families.glm4 import Glm4
from moeplan.arch.families.glm4moe import Glm4Moe
from moeplan.arch.families.gpt_oss import GptOss
from moeplan.arch.families.granite import Granite
from moeplan.arch.families.granite_hybrid import GraniteHybrid
from moeplan.arch.families.granitemoe import GraniteMoe
from moeplan.arch.families.hunyuan import HunyuanDense, HunyuanMoe
from moeplan.arch.families.hy_v3 import HyV3
from moeplan.arch.families.kimi import KimiK3, KimiLinear
from moeplan.arch.families.laguna import Laguna
from moeplan.arch.families.lfm2 import Lfm2, Lfm2Moe
from moeplan.arch.families.llama import Llama
from moeplan.arch.families.llama4 import Llama4
from moeplan.arch.families.mellum import Mellum
from moeplan.arch.families.mimo2 import MiMo2
from moeplan.arch.families.minimax_m2 import MiniMaxM2
from moeplan.arch.families.minimax_m3 import MiniMaxM3
from moeplan.arch.families.mistral3 import Mistral3
from moeplan.arch.families.mistral4 import Mistral4
from moeplan.arch.families.muse_glimmer import MuseGlimmer
from moeplan.arch.families.nemotron_h import NemotronH, NemotronHMoe
from moeplan.arch.families.olmo2 import Olmo2
from moeplan.arch.families.olmoe import Olmoe
from moeplan.arch.families.phi3 import Phi3
from moeplan.arch.families.phimoe import PhiMoe
from moeplan.arch.families.qwen2 import Qwen2
from moeplan.arch.families.qwen3 import Qwen3, Qwen3Moe
from moeplan.arch.families.qwen3vl import Qwen3VL, Qwen3VLMoe
from moeplan.arch.families.qwen4exp import Qwen4Exp
from moeplan.arch.families.qwen35 import Qwen3Next, Qwen35, Qwen35Moe
from moeplan.arch.families.seed_oss import SeedOss
from moeplan.arch.families.smollm3 import SmolLM3
from moeplan.arch.families.step35 import Step35
from moeplan.arch.family import Family

FAMILIES: tuple[type[Family], ...] = (
    Llama,
    Qwen2,
    Qwen3,
    Qwen3Moe,
    Qwen3Next,
    Qwen35,
    Qwen35Moe,
    DeepSeek2,
    DeepSeek32,
    DeepSeek4,
    GlmDsa,
    Mistral3,
    Mistral4,
    Llama4,
    GptOss,
    Glm4Moe,
    Gemma3,
    Gemma3n,
    Gemma4,
    MiMo2,
    MiniMaxM2,
    Step35,
    NemotronH,
    NemotronHMoe,
    GraniteHybrid,
    Granite,
    KimiLinear,
    KimiK3,
    Lfm2,
    Lfm2Moe,
    MiniMaxM3,
    Afmoe,
    BailingMoe2,
    BailingMoe3,
    ExaoneMoe,
    Olmoe,
    Olmo2,
    SeedOss,
    Ernie45Moe,
    HunyuanMoe,
    HunyuanDense,
    Dots1,
    PhiMoe,
    Phi3,
    Qwen3VL,
    Qwen3VLMoe,
    GraniteMoe,
    MuseGlimmer,
    Laguna,
    Cohere2,
    Cohere2Moe,
    Qwen4Exp,
    HyV3,
    Mellum,
    Dots3Note,
    Deci,
    Glm4,
    Exaone4,
    SmolLM3,
)
