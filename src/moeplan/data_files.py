"""The package's YAML data files (catalog models, curated GPUs), parsed once per content and kept as
JSON in the user's cache.

Why: importing PyYAML and running its constructor (Python code even with libyaml's parser) costs
more at every start of `moeplan plan` than the plan's own search; `json.loads` of the same data is
a fraction of a millisecond. The YAML stays the source: an entry is keyed by a hash of the file's
bytes, so an edited file, a new release or a checkout of another branch is parsed afresh, and an
entry is only written when the data survives the JSON round trip unchanged (YAML can hold dates or
integer keys JSON cannot). Where the cache cannot be written (a read-only home) every start parses
the YAML, with the same result.
"""

import contextlib
import hashlib
import json
import os
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

# $MOEPLAN_DATA_CACHE (the tests point it at a temporary folder), else the XDG cache folder.
CACHE_ENV = "MOEPLAN_DATA_CACHE"


class InvalidYAML(ValueError):
    """A data file that is not valid YAML (the parser's message)."""


def cache_dir() -> Path:
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "moeplan" / "data"


def parse_yaml(text: str) -> Any:
    """YAML as PyYAML's safe loader reads it (libyaml's parser where the wheel has it)."""
    import yaml  # only on a cache miss: the import alone is a tenth of a plan's start-up

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        raise InvalidYAML(str(e)) from None


def load_yaml(item: Traversable) -> Any:
    """The data of one YAML file, from the cache when its bytes were parsed before."""
    raw = item.read_bytes()
    entry = cache_dir() / f"{hashlib.blake2b(raw, digest_size=16).hexdigest()}.json"
    try:
        return json.loads(entry.read_bytes())
    except (OSError, ValueError):
        pass  # not cached yet, or an unreadable entry: parse and (re)write it
    data = parse_yaml(raw.decode("utf-8"))
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError):
        return data  # a date, a NaN: YAML only
    if json.loads(text) == data:  # integer keys would come back as strings
        _write(entry, text)
    return data


def _write(entry: Path, text: str) -> None:
    """Write atomically (a reader sees no entry or the whole of it); give up quietly where the
    cache folder cannot be written."""
    import tempfile  # only on a cache miss

    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".json")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, entry)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
