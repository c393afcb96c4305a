"""Text from clients that signoff keeps or looks things up by: no control characters.

PostgreSQL cannot store NUL in text at all (the query fails, far from the door that let it
in), and other control characters make a name print as something it is not ("lena" and
"lena\\x08", a line break that starts a fake log line). So names, ids and filters refuse
every control character, and free text (a reason, a chat message) every one but tabs and
line breaks, where the text comes in.
"""

from __future__ import annotations

import re

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

_IN_NAMES = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # the same, but \t \n \r


def control_character(text: str, *, free_text: bool = False) -> str | None:
    """Why ``text`` is refused (the first control character in it), or None."""
    found = (_IN_TEXT if free_text else _IN_NAMES).search(text)
    if found is None:
        return None
    return f"control characters such as {found.group()!r} are not allowed"


def _refuse_in_names(text: str) -> str:
    if why := control_character(text):
        raise PydanticCustomError("control_character", why)
    return text


def _refuse_in_free_text(text: str) -> str:
    if why := control_character(text, free_text=True):
        raise PydanticCustomError("control_character", why)
    return text


# For request and frame models, after a field's other constraints:
# ``Annotated[str, Field(max_length=200), NAME]``.
NAME = AfterValidator(_refuse_in_names)  # a name, an id, a filter
FREE_TEXT = AfterValidator(_refuse_in_free_text)  # a reason, a chat message
