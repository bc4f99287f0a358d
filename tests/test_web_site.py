"""`moeplan site build`: static HTML + JSON whose relative links all resolve inside the folder."""

import json
import re
from pathlib import Path
from urllib.parse import unquote

from typer.testing import CliRunner

from moeplan.site.build import build_site


def test_static_site_links_resolve(tmp_path: Path) -> None:
    out = tmp_path / "site"
    n = build_site(str(out), models=["qwen3.5-9b", "qwen3.5-35b-a3b"], presets=["mac-64gb"])
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert n == len(files)
    for f in (
        "index.html",
        "models.html",
        "models.json",
        "gpus.html",
        "gpus.json",
        "models/qwen3.5-35b-a3b.html",
        "models/qwen3.5-35b-a3b.json",
        "compare/qwen3.5-9b-vs-qwen3.5-35b-a3b.html",
        "compare/qwen3.5-9b-vs-qwen3.5-35b-a3b.json",
        "compare.html",
        "hardware/mac-64gb.html",
        "hardware/mac-64gb.json",
        "hardware.html",
        "static/vendor/chart.umd.min.js",
        "static/app.js",
    ):
        assert f in files, f
    page = json.loads((out / "models/qwen3.5-35b-a3b.json").read_text())
    assert page["model"]["id"] == "qwen3.5-35b-a3b" and page["plans"]
    for html in out.rglob("*.html"):
        text = html.read_text()
        assert 'href="/' not in text and 'src="/' not in text, f"absolute link in {html}"
        for link in re.findall(r'(?:href|src)="([^"#]+)"', text):
            if link.startswith(("http://", "https://", "data:")):
                continue
            target = (html.parent / unquote(link)).resolve()
            assert target.is_file(), f"{html.relative_to(out)} links {link}, which is not in the site"


def test_cli_site_build_and_serve_are_wired(tmp_path: Path) -> None:
    from moeplan.cli import app

    result = CliRunner().invoke(app, ["site", "build", "--help"])
    assert result.exit_code == 0
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.output
