"""JSON as signoff reads it from clients (socket frames, API bodies): one parse, stricter
than Python's json module where its leniency could make two readers see different things.

- A key repeated in one object is refused: parsers disagree on which one counts (Python's
  keeps the last, others the first), so a repeated key could show one value and act on
  another.
- NaN, Infinity and numbers too large for a float are refused: they are not JSON numbers
  any other reader would agree on.
- Nesting deeper than the parser can follow is refused like any other bad input, never a
  crash of whoever called it.
"""

from __future__ import annotations

import json
import math
from typing import Any


class JSONRefused(ValueError):
    """Text that is JSON, but not JSON signoff accepts; the message says why."""


class NotJSON(JSONRefused):
    """Text that is not JSON at all."""


def loads(raw: str | bytes) -> Any:
    """The value of a JSON document; raises NotJSON or JSONRefused."""
    try:
        if isinstance(raw, bytes):  # as json.loads reads bytes: UTF-8, -16 or -32
            raw = raw.decode(json.detect_encoding(raw), "surrogatepass")
        return _DECODER.decode(raw)
    except JSONRefused:
        raise
    except RecursionError:
        raise JSONRefused("nested too deeply") from None
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes
        raise NotJSON("not valid JSON") from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise JSONRefused(f"the key {key!r} is given more than once")
        seen.add(key)
    return dict(pairs)


def _not_a_number(name: str) -> float:
    raise NotJSON(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JSONRefused(f"the number {text[:20]} is too large")
    return number


# Made once: json.loads with hooks makes a decoder at every call.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_not_a_number, parse_float=_finite
)
