"""Property tests of the web app. The JSON API against its own OpenAPI document (schemathesis,
offline, in-process through the ASGI app) with every built-in check: no 5xx, every status, content
type and body as the document declares, schema-invalid requests refused, schema-valid ones accepted.
The pages (not in the document) under hypothesis: whatever the query parameters, no 5xx.

MOEPLAN_FUZZ_EXAMPLES sets the examples per API operation (`make fuzz-web` runs a long pass)."""

import os

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from moeplan.web.app import create_app

EXAMPLES = int(os.environ.get("MOEPLAN_FUZZ_EXAMPLES", "40"))

CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"max-examples": EXAMPLES},
        # A checker sweep for a rig not seen before takes seconds, more on a busy machine; how long
        # is the load benchmark's business (benchmarks/web_load.py), not this test's.
        "request-timeout": 300,
        # A schema-valid request may still name a model that is not in the catalog (404) or a rig,
        # placement or context the model cannot take (400, with the reason): the rig grammar and the
        # limits a model sets are not expressible in OpenAPI, so those answers count as accepted.
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404"]}},
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(), config=CONFIG)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_agrees_with_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate()


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
        "/": {"model": a, "rig": b, "ctx": c, "cache_ram": c, "fit_target": a},
        "/index.json": {"model": a, "preset": b, "quant": c},
        "/hardware.json": {"gpu": a, "count": c, "ram_type": b},
        "/models": {"kind": a, "q": b, "max_gb": c},
        "/compare.json": {"a": a, "b": b},
        "/gpus.json": {"q": a},
    }[path]
    assert client.get(path, params=params).status_code < 500
