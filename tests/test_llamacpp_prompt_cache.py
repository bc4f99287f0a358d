"""The pinned llama-server keeps its prompt cache within the bound moeplan counts
(validation/prompt_cache.py): its logged limit is --cache-ram (8192 MiB by default), its size never
passes it as distinct prompts fill it, and with -1 the entries stay within n_ctx tokens, each the
predicted state of its tokens."""

import pytest
from validation.prompt_cache import CASES, check

pytestmark = pytest.mark.llamacpp


@pytest.mark.parametrize("case", CASES)
def test_the_servers_prompt_cache_stays_within_the_predicted_bound(case: str) -> None:
    c = check(case)
    assert c["ok"], (c["id"], c["predicted"], c["measured"])
