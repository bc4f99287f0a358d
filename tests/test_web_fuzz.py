"""Property test of the JSON API against its own OpenAPI schema (schemathesis, offline, in-process
through the ASGI app): whatever the query parameters, no answer is a 5xx."""

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from moeplan.web.app import create_app

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_5xx(case: schemathesis.Case) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])


# The pages (and their JSON twins) are not in the OpenAPI schema: hypothesis over their parameters.
client = TestClient(create_app(), raise_server_exceptions=False)
text = st.text(max_size=40) | st.sampled_from(
    ["qwen3.5-35b-a3b", "RTX 4090", "mac-64gb", "2x H200", "-5", "0"]
)


@given(
    path=st.sampled_from(["/", "/index.json", "/hardware.json", "/models", "/compare.json", "/gpus.json"]),
    a=text,
    b=text,
    c=text,
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_pages_never_5xx(path: str, a: str, b: str, c: str) -> None:
    params = {
        "/": {"model": a, "rig": b, "ctx": c},
        "/index.json": {"model": a, "preset": b, "quant": c},
        "/hardware.json": {"gpu": a, "count": c, "ram_type": b},
        "/models": {"kind": a, "q": b, "max_gb": c},
        "/compare.json": {"a": a, "b": b},
        "/gpus.json": {"q": a},
    }[path]
    assert client.get(path, params=params).status_code < 500
