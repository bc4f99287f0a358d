"""The web app in a real browser: Debian's Chromium driven by Playwright (no browser download)
against a real uvicorn server on a free 127.0.0.1 port. Screenshots of each page go to a temporary
folder (or to $MOEPLAN_SCREENSHOTS), so a person can look at what the tests saw."""

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from moeplan.sources.catalog import load_catalog
from moeplan.web.app import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"{CHROMIUM} is absent: `apt-get install chromium` (make test does)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("MOEPLAN_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def pg(browser: Browser) -> Iterator[Page]:
    """A page that records console errors and failed requests; the test fails if any occurred."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    pg.set_default_timeout(60_000)
    yield pg
    context.close()
    assert not problems, problems


def test_deploy_page_shows_command(server: str, pg: Page, shots: Path) -> None:
    pg.goto(f"{server}/models/qwen3.5-35b-a3b")
    assert "Qwen3.5-35B-A3B" in pg.inner_text("h1")
    first = pg.locator("#rig-plans code.cmd").first
    assert first.inner_text().startswith("llama-server -m Qwen3.5-35B-A3B-")
    assert pg.locator("#quant-table tr.floor").count() == 1
    # Chart.js drew on the canvases (a drawn chart registers itself with Chart.getChart)
    drawn = pg.evaluate("['chart-roles','chart-speed','chart-memory'].map(i => !!Chart.getChart(i))")
    assert drawn == [True, True, True]
    pg.screenshot(path=str(shots / "deploy-qwen3.5-35b-a3b.png"), full_page=True)


def test_checker_with_typed_rig(server: str, pg: Page, shots: Path) -> None:
    pg.goto(f"{server}/hardware?rig=8gb-gpu-32gb")
    before = pg.inner_text("#runs-count")
    small_rows = pg.locator("#fit-table tbody tr:not(.nofit)").count()
    pg.fill("#rig-input", "8x H200")
    pg.select_option("select[name=preset]", "")
    pg.click("#rig-form button[type=submit]")
    pg.wait_for_url("**/hardware?rig=8x+H200**")
    assert pg.inner_text("#rig-name") == "8x H200"
    assert pg.inner_text("#runs-count") != before
    assert pg.locator("#fit-table tbody tr:not(.nofit)").count() > small_rows
    assert pg.get_attribute("#share-link", "href") == "/hardware?rig=8x+H200"
    # client-side filter narrows the table without a reload
    pg.fill("input[data-filter-table=fit-table]", "deepseek")
    visible = pg.locator("#fit-table tbody tr:visible")
    assert visible.count() >= 1 and all("DeepSeek" in t for t in visible.all_inner_texts())
    pg.fill("input[data-filter-table=fit-table]", "")
    pg.goto(f"{server}/hardware?rig=rtx-4090-64gb")
    # the top of the table is what the README shows (all 74 rows are some 7,000 px tall)
    top = {"x": 0, "y": 0, "width": 1400, "height": 2600}
    pg.screenshot(path=str(shots / "checker-rtx-4090-64gb.png"), full_page=True, clip=top)


def test_compare_page(server: str, pg: Page, shots: Path) -> None:
    pg.goto(f"{server}/compare?a=qwen3.5-9b&b=qwen3.5-35b-a3b")
    assert pg.inner_text("h1") == "Qwen3.5-9B vs Qwen3.5-35B-A3B"
    assert pg.locator("#compare-plans tbody tr").count() >= 10
    assert pg.evaluate("!!Chart.getChart('chart-compare-speed')")
    pg.screenshot(path=str(shots / "compare-qwen3.5.png"), full_page=True)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/?model=qwen3.5-35b-a3b&rig=rtx-4090-64gb", "home-plan"),
        ("/models?kind=moe&sort=size&desc=1", "models"),
        ("/gpus", "gpus"),
        ("/models/nope", "error"),
    ],
)
def test_other_pages(server: str, browser: Browser, shots: Path, path: str, name: str) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(60_000)
    response = pg.goto(server + path)
    assert response is not None and response.status == (404 if name == "error" else 200)
    pg.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    context.close()
    assert not errors, errors


def test_sorting_a_table_by_clicking(server: str, pg: Page) -> None:
    pg.goto(f"{server}/models")
    pg.click("#models-table thead th:nth-child(3)")  # total params, ascending
    pg.click("#models-table thead th:nth-child(3)")  # descending
    first = pg.locator("#models-table tbody tr td:first-child a").first.inner_text()
    largest = max(load_catalog().values(), key=lambda e: e.params_published.total)
    assert first == largest.name  # Kimi-K3 (2.8T) in the catalog as it is
