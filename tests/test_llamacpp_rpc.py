"""A memory-limited RPC device on 127.0.0.1: per-device memory of llama.cpp's dry run vs moeplan's
placement, and llama.cpp's --fit vs moeplan's smallest fitting --n-cpu-moe."""

import pytest
from validation.runtime import GEMMA, fit_check, placement_check, placement_flags, rpc_server, subject

pytestmark = pytest.mark.llamacpp


@pytest.mark.parametrize("key", [GEMMA, "qwen35moe", "gpt-oss"])
def test_per_device_totals_agree(key: str) -> None:
    s = subject(key)
    with rpc_server(2048) as addr:
        results = [placement_check(s, flags, addr) for flags in placement_flags(s)]
    failed = [(c["flags"], c["error"], c.get("failure")) for c in results if not c["ok"]]
    assert not failed, failed


@pytest.mark.parametrize(("key", "mib"), [("qwen3moe", 2048), ("deepseek2", 3072)])
def test_n_cpu_moe_matches_fit(key: str, mib: int) -> None:
    c = fit_check(key, mib)
    assert c["error"]["layers"] == 0, (c["predicted"], c["measured"], c["explanation"], c.get("failure"))


def test_rpc_server_is_stopped() -> None:
    with rpc_server(256) as addr:
        port = int(addr.rsplit(":", 1)[1])
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        assert sock.connect_ex(("127.0.0.1", port)) != 0
