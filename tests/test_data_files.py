"""The JSON cache of parsed YAML data files: same data as the YAML, refreshed when the bytes change,
and harmless where it cannot be written."""

import datetime
import os
from pathlib import Path

import pytest

from moeplan.data_files import CACHE_ENV, InvalidYAML, load_yaml


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def test_second_read_comes_from_the_cache_with_the_same_data(tmp_path: Path, cache: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("id: m\nconfig: {hidden_size: 2048, rope: 1.0e+6, flags: [true, null]}\n")
    first = load_yaml(f)
    assert first == {"id": "m", "config": {"hidden_size": 2048, "rope": 1e6, "flags": [True, None]}}
    [entry] = cache.iterdir()
    entry.write_text('{"id": "from the cache"}')  # what is read back is the entry, not the YAML
    assert load_yaml(f) == {"id": "from the cache"}


def test_an_edited_file_is_parsed_again(tmp_path: Path, cache: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("context_length: 32768\n")
    assert load_yaml(f) == {"context_length": 32768}
    stat = f.stat()
    f.write_text("context_length: 65536\n")  # same size; the same mtime too
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_yaml(f) == {"context_length": 65536}
    assert len(list(cache.iterdir())) == 2


def test_data_json_cannot_hold_is_returned_as_yaml_reads_it_and_not_cached(
    tmp_path: Path, cache: Path
) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("1: one\nreleased: 2025-04-29\n")
    assert load_yaml(f) == {1: "one", "released": datetime.date(2025, 4, 29)}
    f.write_text("1: one\n")
    assert load_yaml(f) == {1: "one"}  # not {"1": "one"}
    assert not cache.exists() or not list(cache.iterdir())


def test_an_unwritable_cache_still_reads_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    f = tmp_path / "m.yaml"
    f.write_text("name: x\n")
    assert load_yaml(f) == {"name": "x"}
    assert load_yaml(f) == {"name": "x"}


def test_invalid_yaml_is_an_error_with_the_parsers_reason(tmp_path: Path, cache: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("id: [unclosed\n")
    with pytest.raises(InvalidYAML, match="expected ','"):
        load_yaml(f)
