"""Check catalog models against the pinned llama.cpp, one model at a time (for adding a family).

    python -m validation.check_model MODEL_ID [MODEL_ID ...] [--quick]

For each model: the tensor names against the pinned gguf-py's tables, the materialised file through
llama.cpp's loader and one completion, llama-quantize's per-tensor types for every file type
(`--quick`: Q4_K_M, Q8_0 and IQ2_XXS only), and the KV cache / recurrent state / compute buffer of
four runs (lean expert count). Prints one line per check and exits 1 if any failed.
"""

import argparse
import importlib.util
import sys
from types import ModuleType

from moeplan.arch.inventory import inventory
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog
from validation.llamacpp import bin_dir, compare_types, load_check
from validation.materialize import materialize
from validation.runtime import MemCase, Subject, lean, memory_check, stored_weights

CASES = (
    MemCase(5000, 4, False, "q8_0"),
    MemCase(4096, 4, True, "f16"),
    MemCase(512, 1, False, "f16", flash_attn=False),
    MemCase(32768, 1, False, "f16"),
)
QUICK_TYPES = (FileType.Q4_K_M, FileType.Q8_0, FileType.IQ2_XXS)


def pinned_constants() -> ModuleType:
    path = bin_dir().parent.parent / "src" / "llama.cpp" / "gguf-py" / "gguf" / "constants.py"
    spec = importlib.util.spec_from_file_location("pinned_gguf_constants", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def name_errors(model_id: str, c: ModuleType) -> list[str]:
    inv = inventory(load_catalog()[model_id].spec(), mtp=True)
    arch = next((a for a, n in c.MODEL_ARCH_NAMES.items() if n == inv.spec.arch), None)
    if arch is None:
        return [f"the pinned gguf-py has no architecture '{inv.spec.arch}'"]
    allowed = {c.TENSOR_NAMES[k].format(bid=i) for k in c.MODEL_TENSORS[arch] for i in range(inv.block_count)}
    bases = (
        # ".scale": per-tensor scales the converter writes with format_tensor_name(..., ".scale") (gemma4)
        t.name.rsplit(".", 1)[0] if t.name.endswith((".weight", ".bias", ".scale")) else t.name
        for t in inv.tensors
    )
    return [f"{b} is not a {inv.spec.arch} tensor in gguf-py" for b in bases if b not in allowed]


def check(model_id: str, quick: bool) -> int:
    failed = 0

    def report(what: str, ok: bool, detail: object = "") -> None:
        nonlocal failed
        failed += not ok
        print(f"{model_id}  {'ok  ' if ok else 'FAIL'}  {what}  {detail if not ok else ''}".rstrip())

    errors = name_errors(model_id, pinned_constants())
    report("tensor names", not errors, errors[:5])
    c = load_check(model_id)
    report("loads + completion", c["ok"], c.get("failure") or c["error"] or c.get("completion"))
    m = materialize(load_catalog()[model_id].spec())
    for ft in QUICK_TYPES if quick else tuple(FileType):
        t = compare_types(m, ft, model_id)
        report(f"types {ft.name}", t["ok"], (t["error"], t["mismatches"][:3], t.get("failure", "")))
    spec = load_catalog()[model_id].spec()
    small = lean(spec) if spec.is_moe else spec
    mm = materialize(small)
    s = Subject(model_id, model_id, mm.path, mm.spec, mm.inventory, stored_weights(mm), spec.is_moe, mm.holes)
    for case in CASES:
        r = memory_check(s, case)
        detail = (r["error"], r["predicted"], r["measured"], r.get("failure", ""))
        report(f"kv/state {case.label}", r["ok_kv"], detail)
        report(f"compute {case.label}", r["ok_compute"], detail)
    return failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--quick", action="store_true", help="three file types instead of all")
    args = p.parse_args(argv)
    return 1 if sum(check(m, args.quick) for m in args.models) else 0


if __name__ == "__main__":
    sys.exit(main())
