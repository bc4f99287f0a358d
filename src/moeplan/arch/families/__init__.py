"""One module per llama.cpp architecture family; `FAMILIES` lists every class the registry serves."""

from moeplan.arch.families.deepseek2 import DeepSeek2
from moeplan.arch.families.gemma3 import Gemma3
from moeplan.arch.families.glm4moe import Glm4Moe
from moeplan.arch.families.gpt_oss import GptOss
from moeplan.arch.families.llama import Llama
from moeplan.arch.families.llama4 import Llama4
from moeplan.arch.families.qwen3 import Qwen3, Qwen3Moe
from moeplan.arch.families.qwen35 import Qwen3Next, Qwen35, Qwen35Moe
from moeplan.arch.family import Family

FAMILIES: tuple[type[Family], ...] = (
    Llama,
    Qwen3,
    Qwen3Moe,
    Qwen3Next,
    Qwen35,
    Qwen35Moe,
    DeepSeek2,
    Llama4,
    GptOss,
    Glm4Moe,
    Gemma3,
)
