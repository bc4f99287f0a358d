"""One parameter count per model and one unit policy, the same in the CLI, the API and the pages:
a model's parameters leave out the MTP layers that one GGUF holds and another lacks; memory is in
GiB, files in GB, and every face says so."""

import json
import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from moeplan import api
from moeplan.arch.inventory import Role, inventory
from moeplan.cli import app
from moeplan.sources.catalog import load_catalog
from moeplan.units import billions
from moeplan.web.app import create_app

runner = CliRunner()

# Catalog models whose converter keeps MTP layers by default: their files differ by those layers.
MTP_MODELS = ("glm-4.5-air", "deepseek-v3.2", "qwen3-next-80b-a3b", "qwen3.5-35b-a3b", "mimo-v2-flash")


def _cli_json(*args: str) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(), raise_server_exceptions=False)


@pytest.mark.parametrize("model", MTP_MODELS)
def test_one_parameter_count_per_model(client: TestClient, model: str) -> None:
    spec = load_catalog()[model].spec()
    text_model = sum(t.n_elements for t in inventory(spec, mtp=False).tensors)
    mtp = sum(t.n_elements for t in inventory(spec, mtp=True).tensors if t.role is Role.MTP)
    assert mtp > 0
    with_mtp, without = (
        api.predict_size(model, "Q4_K_M", mtp=True),
        api.predict_size(model, "BF16", mtp=False),
    )
    assert with_mtp.params_total == without.params_total == text_model
    assert with_mtp.params_mtp == mtp and without.params_mtp == 0
    assert with_mtp.params_active == without.params_active
    size_cli = _cli_json("size", model)
    models_cli = {r["id"]: r for r in _cli_json("models")}  # type: ignore[union-attr]
    web = client.get(f"/models/{model}.json").json()["model"]
    listed = {m["id"]: m for m in client.get("/api/models").json()}[model]
    assert isinstance(size_cli, dict)
    counts = {
        size_cli["params_total"],
        models_cli[model]["params_total"],
        web["params_total"],
        listed["params_total"],
    }
    assert counts == {text_model}
    shown = billions(text_model)  # and written the same way on the page and in the CLI's table
    page = client.get(f"/models/{model}").text.replace("\u00a0", " ")  # no-break space before the unit
    assert f'<span id="params-total">{shown}</span>' in page
    row = next(line for line in runner.invoke(app, ["models"]).stdout.splitlines() if f" {model} " in line)
    assert f" {shown} " in row


def test_bits_per_weight_counts_every_tensor_in_the_file() -> None:
    r = api.predict_size("glm-4.5-air", "Q8_0", mtp=True)
    assert r.bits_per_weight == pytest.approx(8 * r.tensor_bytes / (r.params_total + r.params_mtp), abs=1e-4)


def test_cli_states_the_unit_policy_and_keeps_files_in_gb() -> None:
    help_text = re.sub(r"[\s│]+", " ", runner.invoke(app, ["--help"]).stdout)  # unwrapped
    assert "GiB" in help_text and "GB (10^9 bytes)" in help_text
    table = runner.invoke(app, ["compare", "qwen3.5-9b", "qwen3.5-35b-a3b"]).stdout
    file_row = next(line for line in table.splitlines() if "file size" in line)
    assert " GB" in file_row and "GiB" not in file_row
    size = runner.invoke(app, ["size", "glm-4.5-air"]).stdout
    assert "in MTP layers" in size  # the layers the file adds, beside the model's own count


def test_every_page_states_the_unit_policy(client: TestClient) -> None:
    for url in (
        "/",
        "/models",
        "/models/qwen3.5-35b-a3b",
        "/hardware?rig=mac-64gb",
        "/gpus",
        "/no/such/page",
    ):
        text = client.get(url).text
        assert 'class="units"' in text and "GiB = 2³⁰ bytes" in text and "GB = 10⁹ bytes" in text, url
