"""Names people type resolve offline to catalog entries: HF repo ids, the usual GGUF repositories and
display names, any case; a release served by another entry's config says so."""

import pytest

from moeplan.api import memory, predict_size
from moeplan.errors import ModelNotFound
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog, normalise, resolve


@pytest.mark.parametrize(
    ("typed", "model_id"),
    [
        ("Qwen/Qwen3.5-35B-A3B", "qwen3.5-35b-a3b"),
        ("unsloth/Qwen3.5-35B-A3B-GGUF", "qwen3.5-35b-a3b"),
        ("bartowski/Qwen_Qwen3.5-35B-A3B-GGUF", "qwen3.5-35b-a3b"),
        ("lmstudio-community/Qwen3-30B-A3B-GGUF", "qwen3-30b-a3b"),
        ("ggml-org/gpt-oss-120b-GGUF", "gpt-oss-120b"),
        ("  QWEN3.5-35B-A3B ", "qwen3.5-35b-a3b"),
        ("deepseek-ai/DeepSeek-V3.1", "deepseek-v3.1"),
        ("granite 4.0 h small", "granite-4.0-h-small"),  # spaces for dashes
        ("trinity large", "trinity-large-thinking"),  # an alias, spaced
        ("laguna-xs2", "laguna-xs.2"),  # the dot left out
        ("Laguna XS.2", "laguna-xs.2"),
        ("deepseek v4 flash", "deepseek-v4-flash"),
        ("poolside/Laguna-XS.2-FP8", "laguna-xs.2"),  # a pre-quantized checkpoint's repository
        ("Laguna-S-2.1-FP8", "laguna-s-2.1"),
        ("qwen3-30b-a3b-instruct-2507", "qwen3-30b-a3b-instruct-2507"),
        ("Qwen3-30B-A3B-Thinking-2507", "qwen3-30b-a3b-instruct-2507"),
        ("Qwen3-235B-A22B-Instruct-2507", "qwen3-235b-a22b-instruct-2507"),
        ("unsloth/Qwen3-235B-A22B-Thinking-2507-GGUF", "qwen3-235b-a22b-instruct-2507"),
        ("Qwen3-4B-Instruct-2507", "qwen3-4b-instruct-2507"),
        ("llama-3.3-70b", "llama-3.1-70b"),  # the same config.json as 3.1's
        ("meta-llama/Llama-3.3-70B-Instruct", "llama-3.1-70b"),
        ("deepseek-r1-0528", "deepseek-r1"),
        ("Qwen3-30B-A3B", "qwen3-30b-a3b"),  # the original stays its own entry
        ("qwen3-vl-8b", "qwen3-vl-8b"),
        ("Qwen3-VL-32B", "qwen3-vl-32b"),
        ("unsloth/Qwen3-VL-32B-Instruct-GGUF", "qwen3-vl-32b"),
        ("MiniMaxAI/MiniMax-M2", "minimax-m2"),  # the first release, not M2.5's entry
        ("bartowski/MiniMaxAI_MiniMax-M2.1-GGUF", "minimax-m2.1"),
        ("RedHatAI/MiniMax-M2-NVFP4", "minimax-m2"),
    ],
)
def test_names_people_type(typed: str, model_id: str) -> None:
    assert resolve(typed).id == model_id


def test_every_entry_resolves_by_each_of_its_names() -> None:
    for entry in load_catalog().values():
        for name in (entry.id, entry.name, entry.hf_repo, f"unsloth/{entry.hf_repo.split('/')[1]}-GGUF"):
            assert resolve(name).id == entry.id, name


def test_normalise_strips_packaging_only() -> None:
    assert normalise("unsloth/Qwen3.6-35B-A3B-GGUF") == "qwen3.6-35b-a3b"
    assert normalise("Qwen3-30B-A3B-Thinking-2507") == "qwen3-30b-a3b-thinking-2507"  # a release, kept


def test_an_alias_says_which_entry_serves_it() -> None:
    note = "Qwen3.5-35B-A3B-Instruct is planned as Qwen3.5-35B-A3B (qwen3.5-35b-a3b): the same config.json"
    assert predict_size("Qwen3.5-35B-A3B-Instruct", "Q4_K_M").notes[0] == note
    assert memory("Qwen3.5-35B-A3B-Instruct", "Q4_K_M", 4096).notes[0] == note
    assert not any("planned as" in n for n in predict_size("Qwen/Qwen3.5-35B-A3B", "Q4_K_M").notes)


@pytest.mark.parametrize(
    ("typed", "model_id", "quant"),
    [
        ("gpt-oss-120b-mxfp4", "gpt-oss-120b", "MXFP4_MOE"),  # ggml-org's file name
        ("gpt-oss-120b-mxfp4-00001-of-00003.gguf", "gpt-oss-120b", "MXFP4_MOE"),
        ("Qwen_Qwen3-8B-Q4_K_M", "qwen3-8b", "Q4_K_M"),
    ],
)
def test_a_quant_label_in_a_model_name_is_refused_with_both_halves(
    typed: str, model_id: str, quant: str
) -> None:
    """The label is a second choice: taken silently it would be dropped or fight --quant."""
    with pytest.raises(ModelNotFound) as e:
        resolve(typed)
    message = str(e.value)
    assert f"name the model '{model_id}'" in message and f"--quant {quant}" in message
    assert "\n" not in message


def test_unknown_names_get_one_line_with_a_suggestion() -> None:
    with pytest.raises(ModelNotFound, match=r"unknown model 'unsloth/Qwen3.5-35B-A3C-GGUF' — did you mean"):
        resolve("unsloth/Qwen3.5-35B-A3C-GGUF")


@pytest.mark.parametrize(
    ("typed", "first", "not_offered"),
    [
        ("Qwen3.5-35B", "qwen3.5-35b-a3b", "qwen3.5-9b"),  # a shortened name: the one that holds it
        ("qwen3.5-35b-a3c", "qwen3.5-35b-a3b", "qwen3.5-9b"),  # a typo: the closest of the family
        ("gpt-oss", "gpt-oss-20b", "qwen"),
        ("qwen2.5-72b", "qwen2.5-72b-instruct", "qwen3"),  # the base's name: its Instruct release
        ("deepseek-r1:32b", "deepseek-r1-distill-qwen-32b", "qwq-32b"),  # ollama's tag of the distill
    ],
)
def test_suggestions_come_from_the_same_family(typed: str, first: str, not_offered: str) -> None:
    with pytest.raises(ModelNotFound) as e:
        resolve(typed)
    offered = str(e.value).split("did you mean ")[1].split("?")[0]
    assert offered.startswith(first) and not_offered not in offered


@pytest.mark.parametrize(
    "typed",
    [
        "qwen2.5-110b",  # a size no Qwen2.5 has: not qwen2.5-1.5b-instruct
        "mistral-small-3.1-22b",  # a size no Mistral Small has: not mistral-small-3.2-24b-2506
        "deepseek-v3.3",  # a version the catalog lacks: not deepseek-v3.2
        "qwen-110b",  # no catalog Qwen has 110 B
        "intern-s1-mini",  # a smaller model of the line: not intern-s1
        "gemma-4-26b-a4b-mini",  # a size word the catalog's names lack
    ],
)
def test_a_model_outside_the_catalog_is_said_plainly(typed: str) -> None:
    with pytest.raises(ModelNotFound) as e:
        resolve(typed)
    message = str(e.value)
    assert "did you mean" not in message and "not in moeplan's catalog" in message
    assert "hf://ORG/REPO or FILE.gguf" in message  # how to plan it anyway


@pytest.mark.parametrize(
    ("typed", "offered"),
    [
        ("qwen-35b", ["qwen3.5-35b-a3b", "qwen3.6-35b-a3b"]),  # not qwen3-coder-480b-a35b ('a35b')
        ("glm-4.5-aiir", ["glm-4.5-air"]),
        ("llama-4-17b", ["llama-4-scout-17b-16e", "llama-4-maverick-17b-128e"]),
    ],
)
def test_suggestions_keep_the_version_and_size_typed(typed: str, offered: list[str]) -> None:
    with pytest.raises(ModelNotFound) as e:
        resolve(typed)
    names = str(e.value).split("did you mean ")[1].split("?")[0].replace(" or ", ", ").split(", ")
    assert names == offered


def test_nothing_close_offers_nothing() -> None:
    with pytest.raises(ModelNotFound) as e:
        resolve("banana-7b")
    assert "did you mean" not in str(e.value)


@pytest.mark.parametrize("typed", ["Q4_K_M", "q4_k_m", "Q4-K-M", "q4km", " Q4KM "])
def test_quant_spellings(typed: str) -> None:
    assert FileType.parse(typed) is FileType.Q4_K_M


def test_an_id_reads_its_own_file_and_the_same_entry() -> None:
    entry = resolve("qwen3.5-9b")
    assert entry is load_catalog()["qwen3.5-9b"]  # planning caches key on the entry's identity
    assert resolve("QWEN3.5-9B") is entry
    for name in ("..", "../../etc/passwd", "/etc/passwd", "qwen3.5-9b.yaml/.."):
        with pytest.raises(ModelNotFound):
            resolve(name)
