"""Numbers as people type them, read one way for the CLI, the rig grammar and the web."""

import re

import pytest

from moeplan import numbers
from moeplan.numbers import BadNumber, parse_float, parse_int


@pytest.mark.parametrize(
    ("typed", "value"),
    [("32768", 32768), (" 8192 ", 8192), ("128k", 131072), ("32K", 32768), ("1M", 1 << 20), ("1.5k", 1536)],
)
def test_context_spellings(typed: str, value: int) -> None:
    assert parse_int(typed, numbers.CONTEXT) == value


@pytest.mark.parametrize(
    ("typed", "needle"),
    [
        ("²", "whole number"),  # str.isdigit() is True for it; int() raises
        ("⑦", "whole number"),
        ("٣٢٧٦٨", "whole number"),  # int() would read Arabic-Indic digits as 32768
        ("1_000", "whole number"),  # int() would read 1000
        ("-5", "whole number"),
        ("1", "from 256 to 16,777,216 tokens"),
        ("99999999999999999999", "not 99999999999999999999"),
        ("9" * 5000, "…"),  # never handed to int(): 4,300+ digits raise ValueError there
        ("1.3k", "whole number"),  # 1331.2 tokens
        ("", "whole number"),
    ],
)
def test_bad_context_is_one_line(typed: str, needle: str) -> None:
    with pytest.raises(BadNumber) as e:
        parse_int(typed, numbers.CONTEXT)
    message = str(e.value)
    assert needle in message and "\n" not in message and len(message) < 200
    assert message.startswith("context must be")


def test_suffixes_only_where_they_mean_something() -> None:
    with pytest.raises(BadNumber, match="port must be a whole number from 1 to 65,535"):
        parse_int("8k", numbers.PORT)
    with pytest.raises(BadNumber, match="not 99999"):
        parse_int("99999", numbers.PORT)
    assert parse_int("0", numbers.CONTEXT_OR_MODEL) == 0  # llama.cpp's -c 0: the model's own
    with pytest.raises(BadNumber, match="or 0 for the model's own"):
        parse_int("100", numbers.CONTEXT_OR_MODEL)


def test_optional_and_decimal_fields() -> None:
    assert numbers.optional_int("", numbers.GPU_COUNT) is None
    assert numbers.optional_int(None, numbers.GPU_COUNT) is None
    assert numbers.optional_int("7", numbers.GPU_COUNT) == 7
    assert parse_float("9.5", numbers.MODEL_GB) == 9.5
    with pytest.raises(BadNumber, match="size must be a number"):
        parse_float("1e3", numbers.MODEL_GB)
    with pytest.raises(BadNumber, match="must be from 0"):
        parse_float("20000000", numbers.MODEL_GB)


@pytest.mark.parametrize("text", ["32768", "32k", "128K", "1M", "1.5k", "256"])
def test_the_declared_pattern_matches_what_parse_int_reads(text: str) -> None:
    assert re.fullmatch(numbers.pattern(numbers.CONTEXT), text) and numbers.parse_int(text, numbers.CONTEXT)


@pytest.mark.parametrize("text", [" 128k", "-5", "1e3", "1_000", "٣", "²", "128kk", "k", ".5k", "1,024"])
def test_the_declared_pattern_refuses_what_no_request_should_hold(text: str) -> None:
    """Stricter than the reader only by the spaces the forms trim (' 128k')."""
    assert not re.fullmatch(numbers.pattern(numbers.CONTEXT), text)
    if text == text.strip():
        with pytest.raises(BadNumber):
            parse_int(text, numbers.CONTEXT)


def test_fields_without_suffixes_declare_none() -> None:
    assert not re.fullmatch(numbers.pattern(numbers.SEQUENCES), "4k")
    assert re.fullmatch(numbers.pattern(numbers.SEQUENCES), "4")
