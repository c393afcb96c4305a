"""The JSON reader of frames and API bodies: what Python's json module lets through and
signoff does not."""

from __future__ import annotations

import pytest

from signoff.core.strict_json import JSONRefused, NotJSON, loads


def test_documents_are_read_as_json_reads_them() -> None:
    raw = '{"a": [1, 2.5, "x", null, true, {"b": {}}], "c": 12345678901234567890}'
    assert loads(raw) == {"a": [1, 2.5, "x", None, True, {"b": {}}], "c": 12345678901234567890}
    assert loads(b'{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ('{"a": 1, "a": 2}', "a"),
        ('{"a": 1, "b": {"c": 1, "c": 1}}', "c"),
        ('[{"x": 1}, {"y": 1, "y": 2}]', "y"),
    ],
)
def test_a_key_given_twice_in_one_object_is_refused_at_any_depth(raw: str, key: str) -> None:
    with pytest.raises(JSONRefused, match=f"the key '{key}' is given more than once"):
        loads(raw)


def test_the_same_key_in_different_objects_is_fine() -> None:
    assert loads('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("raw", ["NaN", "[Infinity]", '{"x": -Infinity}'])
def test_nan_and_infinity_are_not_json(raw: str) -> None:
    with pytest.raises(NotJSON):
        loads(raw)


@pytest.mark.parametrize("raw", ["1e400", "[-1e400]"])
def test_numbers_beyond_a_float_are_refused(raw: str) -> None:
    with pytest.raises(JSONRefused, match="too large"):
        loads(raw)


@pytest.mark.parametrize("depth", [5_000, 30_000])
@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_nesting_too_deep_is_refused_not_a_crash(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    with pytest.raises(JSONRefused, match="nested too deeply"):
        loads(opener * depth + "1" + closer * depth)


@pytest.mark.parametrize("raw", ["", "{", "{'a': 1}", '{"a": 1} x', b"\xff\xfe\x00"])
def test_text_that_is_not_json(raw: str | bytes) -> None:
    with pytest.raises(NotJSON, match="not valid JSON"):
        loads(raw)
