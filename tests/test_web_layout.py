"""Layout and access of every page type in Debian's Chromium, at a phone's width (390 px) and a
desktop's (1440 px): nothing scrolls sideways (wide tables scroll inside their own box), commands wrap
only between tokens, copy buttons copy the command alone, text meets WCAG AA contrast (4.5:1),
sortable headers work from the keyboard, unknown paths get an HTML 404, error pages keep the form
filled in, and the preset menus work without JavaScript."""

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.test_web_browser import browser, server  # noqa: F401  (shared fixtures)

WIDTHS = (390, 1440)

# One of each page type (the error pages included), each with the widest content it can have.
PAGES = {
    "home": "/?model=qwen3.5-35b-a3b&rig=rtx-4090-64gb",
    "deploy": "/models/qwen3.5-35b-a3b",
    "checker": "/hardware?rig=rtx-4090-64gb",
    "compare": "/compare?a=qwen3.5-9b&b=qwen3.5-35b-a3b",
    "models": "/models",
    "gpus": "/gpus",
    "404": "/no/such/page",
    "error": "/hardware?rig=bogus+machine&show=runs",
}
STATUS = {"404": 404, "error": 400}
Opener = Callable[..., Page]

# Each text-bearing element's own text colour against the background it is painted on (ancestors'
# backgrounds composited over white, opacity applied): the WCAG 2.x contrast ratio.
CONTRAST_JS = """() => {
  const rgba = s => {
    const m = s.match(/[\\d.]+/g).map(Number);
    return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
  };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const lum = c => 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  let n;
  while ((n = walker.nextNode())) {
    const el = n.parentElement;
    if (!n.data.trim() || seen.has(el) || !el.getClientRects().length) continue;
    if (['SCRIPT', 'STYLE', 'OPTION'].includes(el.tagName)) continue;
    seen.add(el);
    const layers = [];
    let opacity = 1;
    for (let e = el; e; e = e.parentElement) {
      const cs = getComputedStyle(e);
      opacity *= Number(cs.opacity);
      const c = rgba(cs.backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (const c of layers.reverse()) bg = over(c, bg);
    const fg0 = rgba(getComputedStyle(el).color);
    const fg = over([fg0[0], fg0[1], fg0[2], fg0[3] * opacity], bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const what = `${el.tagName}.${el.className} "${n.data.trim().slice(0, 40)}"`;
    if (ratio < 4.5) bad.push(`${ratio.toFixed(2)}: ${what}`);
  }
  return bad;
}"""

# Every whitespace-separated token of a command: its boxes must all sit on one line.
WRAP_JS = """() => {
  const bad = [];
  document.querySelectorAll('code.cmd').forEach(el => {
    if (!el.getClientRects().length) return;
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    let n;
    while ((n = walker.nextNode())) {
      for (const m of n.data.matchAll(/\\S+/g)) {
        const r = document.createRange();
        r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
        const boxes = Array.from(r.getClientRects()).filter(x => x.width > 0);
        const tops = new Set(boxes.map(x => Math.round(x.top)));
        if (tops.size > 1) bad.push(m[0]);
      }
    }
  });
  return bad;
}"""

# Flags named in a notice's prose ("--ctx", "-ngl"): each must be a .flag span on one line.
FLAG_JS = """() => {
  const bad = [];
  document.querySelectorAll('.notice').forEach(el => {
    if (!el.getClientRects().length) return;
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    let n;
    while ((n = walker.nextNode())) {
      const inFlag = n.parentElement.classList.contains('flag');
      for (const m of n.data.matchAll(/(?<![\\w-])--?[a-z][\\w-]*/g)) {
        const r = document.createRange();
        r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
        const boxes = Array.from(r.getClientRects()).filter(x => x.width > 0);
        const tops = new Set(boxes.map(x => Math.round(x.top)));
        if (!inFlag || tops.size > 1) bad.push(m[0]);
      }
    }
  });
  return bad;
}"""

# The clipboard, recorded: navigator.clipboard.writeText stores what it was given.
CLIPBOARD_JS = """Object.defineProperty(navigator, 'clipboard', {configurable: true, value: {
  writeText: t => { window.__copied = t; return Promise.resolve(); }}});"""


@pytest.fixture()
def open_page(server: str, browser: Browser) -> Iterator[Opener]:  # noqa: F811
    """open_page(name, width, js=True) -> a Page at that page type and viewport width."""
    contexts = []

    def opener(name: str, width: int, *, js: bool = True) -> Page:
        context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=js)
        context.add_init_script(CLIPBOARD_JS)
        contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(120_000)
        response = pg.goto(server + PAGES[name])
        assert response is not None and response.status == STATUS.get(name, 200)
        return pg

    yield opener
    for c in contexts:
        c.close()


CASES = [(name, width) for name in PAGES for width in WIDTHS]


@pytest.mark.parametrize(("name", "width"), CASES)
def test_no_sideways_scroll(open_page: Opener, name: str, width: int) -> None:
    pg = open_page(name, width)
    assert pg.evaluate("document.scrollingElement.scrollWidth") <= width
    # every table sits in a box of its own that scrolls (so a new table inherits it)
    assert pg.evaluate("[...document.querySelectorAll('main table')].every(t => t.closest('.table-scroll'))")
    if width >= 1440:  # on a desktop every column is on screen, the command and notice columns too
        overflow = "[...document.querySelectorAll('.table-scroll')].map(b => b.scrollWidth - b.clientWidth)"
        assert all(x <= 0 for x in pg.evaluate(overflow))


@pytest.mark.parametrize(("name", "width"), CASES)
def test_commands_wrap_only_between_tokens(open_page: Opener, name: str, width: int) -> None:
    pg = open_page(name, width)
    assert pg.evaluate(WRAP_JS) == []


# Commands whose box is narrower than what it holds: the box scrolls, and the eye sees a cut file name.
CLIPPED_JS = """() => [...document.querySelectorAll('code.cmd')]
  .filter(e => e.getClientRects().length && e.scrollWidth > e.clientWidth + 1)
  .map(e => e.textContent.split(' ').sort((a, b) => b.length - a.length)[0])"""


@pytest.mark.parametrize(("name", "width"), CASES)
def test_commands_are_read_whole(open_page: Opener, name: str, width: int) -> None:
    """Before: at 1440 px 29 of the deploy page's 35 commands and 91 of the checker's 101 showed
    '-m Qwen3.5-35B-A3B-Q6_K.gg', the file name cut at the box's edge (the rest scrolled)."""
    assert open_page(name, width).evaluate(CLIPPED_JS) == []


def test_a_deploy_page_with_a_latency_spread_stays_on_a_desktop(server: str, browser: Browser) -> None:  # noqa: F811
    """Before: gpt-oss-120b's plans (percentiles that differ where experts sit on the CPU) took
    three latency columns and 1,433 px in a 1,352 px box; now one column, 'p50 / p95 / p99'."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        pg = context.new_page()
        pg.set_default_timeout(120_000)
        pg.goto(f"{server}/models/gpt-oss-120b")
        headers = pg.locator("#rig-plans thead th").all_inner_texts()
        assert [h.replace("\n", " ").rstrip(" ↕") for h in headers if "latency" in h] == [
            "latency p50 / p95 / p99"
        ]
        cells = pg.evaluate(
            """() => { const i = [...document.querySelectorAll('#rig-plans thead th')]
              .findIndex(th => th.textContent.includes('latency'));
              return [...document.querySelectorAll('#rig-plans tbody tr')]
                .map(r => r.children[i].textContent); }"""
        )
        assert any(" / " in c for c in cells) and any(" / " not in c for c in cells)
        box = pg.evaluate(
            "(() => { const b = document.querySelector('#rig-plans').parentElement; "
            "return b.scrollWidth - b.clientWidth; })()"
        )
        assert box <= 0 and pg.evaluate(CLIPPED_JS) == []
    finally:
        context.close()


@pytest.mark.parametrize(("name", "width"), [("deploy", w) for w in WIDTHS] + [("home", w) for w in WIDTHS])
def test_flags_in_notices_never_break(open_page: Opener, name: str, width: int) -> None:
    assert open_page(name, width).evaluate(FLAG_JS) == []


@pytest.mark.parametrize(("name", "width"), CASES)
def test_text_contrast_at_least_4_5(open_page: Opener, name: str, width: int) -> None:
    pg = open_page(name, width)
    assert pg.evaluate(CONTRAST_JS) == []


@pytest.mark.parametrize("name", ["home", "deploy", "checker"])
def test_copy_buttons_copy_the_command_alone(open_page: Opener, name: str) -> None:
    pg = open_page(name, 1440)
    buttons = pg.locator("button.copy")
    assert buttons.count() >= 1
    for i in range(buttons.count()):
        button = buttons.nth(i)
        button.scroll_into_view_if_needed()
        button.click()
        copied = pg.evaluate("window.__copied")
        shown = button.locator("xpath=preceding-sibling::code[contains(@class, 'cmd')][1]").inner_text()
        assert copied == shown
        assert not re.match(r"node \d", copied), copied  # a multi-node row's label is not the command
        assert re.match(r"(llama-server|vllm|python|ray|sglang)\b", copied), copied


@pytest.mark.parametrize(
    ("name", "table", "header"),
    [
        ("deploy", "quant-table", "file"),
        ("checker", "fit-table", "params"),
        ("models", "models-table", "total params"),
    ],
)
def test_sort_headers_work_from_the_keyboard(open_page: Opener, name: str, table: str, header: str) -> None:
    pg = open_page(name, 1440)
    heads = pg.locator(f"#{table} thead th")
    assert pg.locator(f"#{table} thead th button").count() == heads.count()
    col = heads.all_inner_texts().index(next(t for t in heads.all_inner_texts() if t.startswith(header)))
    th = heads.nth(col)
    assert th.get_attribute("aria-sort") == "none"
    for _ in range(300):  # Tab through the page, as a keyboard user does, to that header
        pg.keyboard.press("Tab")
        if pg.evaluate(
            f"document.activeElement.closest('th') === document.querySelectorAll('#{table} thead th')[{col}]"
        ):
            break
    else:
        pytest.fail(f"Tab never reaches the {header!r} header of #{table}")
    pg.keyboard.press("Enter")
    assert th.get_attribute("aria-sort") == "ascending"
    values = pg.evaluate(
        f"[...document.querySelectorAll('#{table} tbody tr')]"
        f".map(r => r.children[{col}].dataset.sort ?? r.children[{col}].textContent.trim())"
    )
    numbers = [float(v) for v in values]
    assert numbers == sorted(numbers)
    pg.keyboard.press("Space")
    assert th.get_attribute("aria-sort") == "descending"
    assert pg.evaluate(
        f"[...document.querySelectorAll('#{table} tbody tr')].map(r => +r.children[{col}].dataset.sort)"
    ) == sorted(numbers, reverse=True)
    assert heads.nth(0).get_attribute("aria-sort") == "none"


@pytest.mark.parametrize("width", WIDTHS)
def test_unknown_path_is_an_html_404(open_page: Opener, server: str, width: int) -> None:  # noqa: F811
    pg = open_page("404", width)
    assert pg.inner_text("h1") == "Not found"
    assert pg.locator("header.top nav a").count() >= 5  # the site around it, not a bare JSON body
    api = pg.request.get(f"{server}/api/no-such-endpoint")
    assert api.status == 404 and api.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("url", "form", "values"),
    [
        (
            "/hardware?rig=bogus+machine&show=runs&sort=model",
            "#rig-form",
            {"rig": "bogus machine", "show": "runs", "sort": "model"},
        ),
        (
            "/?model=no-such-model&rig=rtx-4090-64gb&ctx=32768",
            "form.planform",
            {"model": "no-such-model", "rig": "rtx-4090-64gb", "ctx": "32768"},
        ),
        (
            "/?model=qwen3.5-35b-a3b&rig=rtx-4090-64gb&cache_ram=-5&fit_target=0",
            "form.planform",
            {"model": "qwen3.5-35b-a3b", "cache_ram": "-5", "fit_target": "0"},
        ),
        ("/compare?a=qwen3.5-9b&b=no-such-model", "form.filters", {"a": "qwen3.5-9b", "b": "no-such-model"}),
        ("/models?max_gb=lots&q=qwen", "form.filters", {"max_gb": "lots", "q": "qwen"}),
    ],
)
def test_error_pages_keep_the_form_filled_in(
    server: str,  # noqa: F811
    browser: Browser,  # noqa: F811
    url: str,
    form: str,
    values: dict[str, str],
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 900})
    pg = context.new_page()
    response = pg.goto(server + url)
    assert response is not None and response.status in (400, 404)
    assert pg.locator(".error-message").count() == 1
    for field, value in values.items():
        box = pg.locator(f"{form} [name={field}]")
        assert box.count() == 1, f"no {field} box in {form}"
        assert box.input_value() == value, field
    context.close()


@pytest.mark.parametrize(("name", "form"), [("checker", "#rig-form"), ("home", "form.planform")])
def test_preset_applies_without_javascript(open_page: Opener, server: str, name: str, form: str) -> None:  # noqa: F811
    pg = open_page(name, 390, js=False)
    pg.select_option(f"{form} select[name=preset]", "8gb-gpu-32gb")
    pg.click(f"{form} button[type=submit]")
    pg.wait_for_load_state()
    assert pg.locator(f"{form} [name=rig]").input_value() == "8gb-gpu-32gb"
    if name == "checker":
        assert pg.inner_text("#rig-name") == "RTX 5060 Ti 8GB + 32GB DDR5-5600 dual-channel"
    else:
        assert "on 8gb-gpu-32gb" in pg.inner_text("main h2")


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_states_its_units(open_page: Opener, name: str) -> None:
    text = open_page(name, 390).inner_text(".units")
    assert "GiB" in text and "GB" in text and "2^30" in text.replace("2³⁰", "2^30")


@pytest.mark.parametrize("width", WIDTHS)
def test_plans_table_has_no_constant_column(open_page: Opener, width: int) -> None:
    pg = open_page("deploy", width)
    columns = pg.evaluate(
        """() => { const rows = [...document.querySelectorAll('#rig-plans tbody tr')];
        return [...document.querySelectorAll('#rig-plans thead th')].map((th, i) =>
          [th.textContent.trim(), rows.map(r => r.children[i].textContent.trim())]); }"""
    )
    constant = [name for name, cells in columns if len(set(cells)) == 1]
    assert constant == [], f"one value on every rig, said in each row: {constant}"
    said_once = pg.inner_text("p.constants")  # what every rig shares, once above the table
    assert said_once.startswith("On every rig:") and "prompt tokens" in said_once


# Where each box of the plan form is drawn, with its label's text and box.
FORM_BOXES_JS = """() => [...document.querySelectorAll('form.planform :is(input, select)')].map(e => {
  const r = e.getBoundingClientRect(), l = e.closest('label');
  const lr = l ? l.getBoundingClientRect() : r;
  return {name: e.name, left: Math.min(r.left, lr.left), right: Math.max(r.right, lr.right),
          top: r.top, bottom: r.bottom, width: r.width, label: l ? l.innerText.trim() : ''};
})"""


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_form_options_are_usable(open_page: Opener, server: str, width: int) -> None:  # noqa: F811
    """The plan form's prompt cache and fit margin boxes: labelled, with their units and defaults,
    wholly on screen and clear of the other boxes at a phone's and a desktop's width; typed into
    and sent, the plan comes back with them and the boxes keep them."""
    pg = open_page("home", width)
    boxes = {b["name"]: b for b in pg.evaluate(FORM_BOXES_JS)}
    for name, label, default in (
        ("cache_ram", "Prompt cache, MiB", "8192"),
        ("fit_target", "Fit margin, MiB", "1024"),
    ):
        b = boxes[name]
        assert (
            b["label"] == label and pg.get_attribute(f"form.planform [name={name}]", "placeholder") == default
        )
        assert b["left"] >= 0 and b["right"] <= width and b["width"] >= 48, b  # room for "16384"
        for other in boxes.values():
            if other["name"] != name:
                apart = other["right"] <= b["left"] or b["right"] <= other["left"]
                assert apart or other["bottom"] <= b["top"] or b["bottom"] <= other["top"], (name, other)
    pg.fill("form.planform [name=cache_ram]", "2048")
    pg.fill("form.planform [name=fit_target]", "512")
    pg.click("form.planform button[type=submit]")
    pg.wait_for_url("**fit_target=512**")
    assert "cache_ram=2048" in pg.url
    assert pg.input_value("form.planform [name=cache_ram]") == "2048"
    assert pg.input_value("form.planform [name=fit_target]") == "512"
    assert "--cache-ram 2048 (given)" in pg.inner_text("p.prompt-cache")
    assert pg.locator("code.cmd").first.inner_text().endswith("--cache-ram 2048")
    assert pg.evaluate("document.scrollingElement.scrollWidth") <= width
