"""Jinja2 rendering shared by the live app and the static site: one environment (autoescape on for
every template), number formatting filters, and `Links`, which knows where each page lives — as a
route of the running app, or as a file of the static export reached by a relative path."""

import re
from collections.abc import Iterable
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from moeplan import units
from moeplan.web import charts

TEMPLATES = resources.files("moeplan") / "web" / "templates"
STATIC = resources.files("moeplan") / "web" / "static"


# On the pages a number and its unit never part at a line break (a no-break space between them).
def gib(n: int | float | None) -> str:
    return units.gib(n, 1).replace(" ", "\u00a0")


def gib_change(n: int | float) -> str:
    return units.gib_change(n, 1).replace(" ", "\u00a0")


def gb(n: int | float | None) -> str:
    return units.gb(n, 1).replace(" ", "\u00a0")


def mib(n: int | float | None) -> str:
    """Buffers under a GiB (a vision projector's), where one decimal of GiB says too little."""
    return "—" if n is None else f"{n / 2**20:,.0f}\u00a0MiB"


def billions(n: int | float | None) -> str:
    return units.billions(n).replace(" ", "\u00a0")


def tokens(n: int | None) -> str:
    if n is None:
        return "—"
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else f"{n:,}"


def speed(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 1 else f"{x:.2f}"


def label(name: str) -> str:
    """'prefill_tok_s' -> 'prefill tok/s', 'ttft_s' -> 'ttft' (for fields the speed model adds; a
    time carries its own unit, `extra`)."""
    if name.endswith("_tok_s"):
        name = name.removesuffix("_tok_s") + " tok/s"
    return name.removesuffix("_s").replace("_", " ")


def column_groups(keys: list[str]) -> list[tuple[list[str], str]]:
    """The extra columns of a table of plans, with their headers: consecutive fields of one quantity
    (latency p50, p95, p99) share a column, 'latency p50 / p95 / p99', so a row of plans stays on
    a desktop's screen (`extra_cell` shows one number where they agree)."""
    groups: list[list[str]] = []
    for k in keys:
        words = label(k).split(" ")
        if groups and len(words) > 1 and label(groups[-1][0]).split(" ")[:-1] == words[:-1]:
            groups[-1].append(k)
        else:
            groups.append([k])
    return [(g, " / ".join([label(g[0])] + [label(k).rsplit(" ", 1)[1] for k in g[1:]])) for g in groups]


def extra_cell(extras: dict[str, float], keys: list[str]) -> str:
    """A shared column's cell: '26.2 ms' where its fields agree (one sequence: every percentile is the
    same), else each field's value ('3.8 / 4.1 / 5.0 ms'), the unit said once."""
    values = [extra(extras[k], k) for k in keys]
    if len(set(values)) == 1:
        return values[0]
    unit = values[-1].rsplit("\u00a0", 1)[1] if "\u00a0" in values[-1] else ""
    if unit and all(v.endswith("\u00a0" + unit) for v in values):
        return " / ".join(v.rsplit("\u00a0", 1)[0] for v in values) + "\u00a0" + unit
    return " / ".join(values)


def extra(value: float, name: str) -> str:
    """A number the speed model added, by its field's name: a time (`_s`) in ms or s, as the CLI
    shows it; a speed (`_tok_s`) or a count as the other numbers."""
    if name.endswith("_s") and not name.endswith("_tok_s"):
        return units.seconds(value).replace(" ", "\u00a0")
    return speed(value)


# A flag with its values up to this many characters never parts; a longer one (`-m` and a long file
# name, `vllm serve ORG/REPO`) may break between its words, each word still whole.
ARG_CH_MAX = 44
# The widest a table's command box grows for one span: a repository or file name (Nemotron's, 49) fits;
# a longer span (an -ot regex) scrolls inside its box rather than widen the table off the screen.
BOX_CH_MAX = 52


def _arg_groups(cmd: str) -> list[str]:
    """A command's flags each with its values (the program and its arguments first), a group longer
    than ARG_CH_MAX split into its words."""
    groups: list[list[str]] = []
    for token in cmd.split(" "):
        flag = token.startswith("-") and not token[1:2].isdigit()  # "-1" is a value, not a flag
        if flag or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    return [w for g in groups for w in ([" ".join(g)] if len(" ".join(g)) <= ARG_CH_MAX else g)]


def command_spans(cmd: str) -> tuple[int, Markup]:
    """A command as one span per flag with its values, so a narrow box breaks the line only between
    flags, never inside a number or a file name (the text is unchanged: the spans are joined by the
    spaces that separated them); and the characters of its widest span, the width its box in a
    table keeps so a file name is read whole, not cut at the box's edge (at most BOX_CH_MAX). Both
    from one split of the command."""
    groups = _arg_groups(cmd)
    widest = min(BOX_CH_MAX, max((len(g) for g in groups), default=0))
    return widest, Markup(" ").join(Markup('<span class="arg">{}</span>').format(g) for g in groups)


def notice_id(name: str) -> Markup:
    """A notice id that may break after its underscores (MOE_<wbr>EXPERT_<wbr>CPU_<wbr>OFFLOAD), so a
    column of them is as narrow as its longest word, not its longest id."""
    return Markup("_<wbr>").join(name.split("_"))


FLAG = re.compile(r"(?<![\w-])--?[a-z][\w-]*")  # a command-line flag written in prose: --ctx, -ngl


def prose_html(text: str) -> Markup:
    """Prose that names flags (a notice's "ask for more with --ctx"), each flag kept on one line:
    a browser would otherwise break "--ctx" after its first hyphen."""
    escaped = str(escape(text))
    return Markup(FLAG.sub(lambda m: f'<span class="flag">{m.group(0)}</span>', escaped))


def constant(values: Iterable[Any]) -> bool:
    """A column holding one value in every row (of two or more): said once above its table instead."""
    seen = list(values)
    return len(seen) > 1 and all(v == seen[0] for v in seen)


class Links:
    """Where pages live. Live: the app's routes. Static: files relative to the current page, with
    `prefix` leading back to the site root ('' at the top, '../' one folder down); pages the export
    does not contain (an arbitrary rig, a pair that is not a sibling pair) have no link (None)."""

    def __init__(
        self,
        *,
        live: bool = True,
        prefix: str = "",
        compare_pairs: Iterable[tuple[str, str]] = (),
        checker_rigs: Iterable[str] = (),
        models: Iterable[str] | None = None,
    ) -> None:
        self.live = live
        self.prefix = prefix
        self.compare_pairs = frozenset(compare_pairs)
        self.checker_rigs = frozenset(checker_rigs)
        self.built_models = None if models is None else frozenset(models)

    def _q(self, path: str, query: dict[str, Any]) -> str:
        q = {k: v for k, v in query.items() if v not in (None, "")}
        return f"{path}?{urlencode(q)}" if q else path

    def home(self, **query: Any) -> str:
        return self._q("/", query) if self.live else f"{self.prefix}index.html"

    def models(self, **query: Any) -> str:
        return self._q("/models", query) if self.live else f"{self.prefix}models.html"

    def model(self, mid: str, *, json: bool = False) -> str:
        ext = ".json" if json else ("" if self.live else ".html")
        if self.live:
            return f"/models/{quote(mid)}{ext}"
        if self.built_models is not None and mid not in self.built_models:
            return "#"  # a partial export without this model's page
        return f"{self.prefix}models/{quote(mid)}{ext}"

    def compare(self, a: str, b: str, *, json: bool = False) -> str | None:
        if self.live:
            return self._q("/compare.json" if json else "/compare", {"a": a, "b": b})
        if (a, b) not in self.compare_pairs:
            return None
        return f"{self.prefix}compare/{quote(a)}-vs-{quote(b)}.{'json' if json else 'html'}"

    def hardware(self, rig: str | None = None, *, json: bool = False, **query: Any) -> str | None:
        if self.live:
            return self._q("/hardware.json" if json else "/hardware", {"rig": rig, **query})
        if rig is None:
            return f"{self.prefix}hardware.html"
        if rig not in self.checker_rigs:
            return None
        return f"{self.prefix}hardware/{quote(rig)}.{'json' if json else 'html'}"

    def gpus(self, **query: Any) -> str:
        return self._q("/gpus", query) if self.live else f"{self.prefix}gpus.html"

    def static(self, path: str) -> str:
        return f"/static/{path}" if self.live else f"{self.prefix}static/{path}"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        gib=gib,
        gib_change=gib_change,
        notice_id=notice_id,
        extra_cell=extra_cell,
        gb=gb,
        mib=mib,
        billions=billions,
        tokens=tokens,
        speed=speed,
        label=label,
        extra=extra,
        command_spans=command_spans,
        prose_html=prose_html,
    )
    env.tests["constant"] = constant
    env.globals["charts"] = charts
    env.globals["column_groups"] = column_groups
    return env


ENV = environment()


def render(template: str, links: Links, **context: Any) -> str:
    return ENV.get_template(template).render(L=links, **context)
