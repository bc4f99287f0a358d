"""The uses a plan is for, and the thresholds the policy (plan/policy.py) states in words: kept
apart from the policy so that the CLI can print them in its help without loading the planner."""

from dataclasses import dataclass

from moeplan.errors import MoeplanError

DEFAULT_CONTEXT = 32768
LONG_CONTEXT = 65536  # above this the KV cache is q8_0 unless the user chose its type
# Decode below this is too slow to use interactively: slower than people read (about 4-5 tokens/s
# for 200-250 words a minute), so a reply arrives slower than it can be read.
TOO_SLOW_TOK_S = 5.0


@dataclass(frozen=True)
class Use:
    name: str
    ctx: int
    n_seq: int
    what: str


USES = {
    u.name: u
    for u in (
        Use("chat", DEFAULT_CONTEXT, 1, "one conversation: 32k context, -np 1"),
        Use("code", 131072, 1, "agents and code assistants: 128k context, -np 1"),
        Use("batch", 131072, 4, "four sequences in flight: 128k shared context, -np 4"),
    )
}
DEFAULT_USE = USES["chat"]


def use_named(name: str | None) -> Use:
    if name is None:
        return DEFAULT_USE
    use = USES.get(name.strip().lower())
    if use is None:
        raise MoeplanError(f"unknown use '{name}': use one of {', '.join(USES)}")
    return use
