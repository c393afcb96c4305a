"""Text from clients that signoff keeps or looks things up by: no control characters.

PostgreSQL cannot store NUL in text at all (the query fails, far from the door that let it
in), and other control characters make a name print as something it is not ("lena" and
"lena\\x08", a line break that starts a fake log line). So names, ids and filters refuse
every control character, and free text (a reason, a chat message) every one but tabs and
line breaks, where the text comes in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

# Written once for Python and for JSON Schema (ECMA-262): both read \u and four hex digits.
_NAME_CONTROLS = r"\u0000-\u001f\u007f-\u009f"  # C0, DEL and C1
_TEXT_CONTROLS = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"  # but \t \n \r
_IN_NAMES = re.compile(f"[{_NAME_CONTROLS}]")
_IN_TEXT = re.compile(f"[{_TEXT_CONTROLS}]")


def control_character(text: str, *, free_text: bool = False) -> str | None:
    """Why ``text`` is refused (the first control character in it), or None."""
    found = (_IN_TEXT if free_text else _IN_NAMES).search(text)
    if found is None:
        return None
    return f"control characters such as {found.group()!r} are not allowed"


@dataclass(frozen=True)
class PlainText:
    """Metadata for a model's text field: refuses control characters after the field's
    other checks, and states the rule in the JSON schema as a pattern, so the OpenAPI
    document says what the server accepts."""

    free_text: bool = False

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._refuse, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        stated = handler(schema)
        stated.setdefault("pattern", _TEXT_PATTERN if self.free_text else _NAME_PATTERN)
        return stated

    def _refuse(self, text: str) -> str:
        if why := control_character(text, free_text=self.free_text):
            raise PydanticCustomError("control_character", why)
        return text


# The same rules as JSON Schema patterns.
_NAME_PATTERN = f"^[^{_NAME_CONTROLS}]*$"
_TEXT_PATTERN = f"^[^{_TEXT_CONTROLS}]*$"

# For request and frame models, after a field's other constraints:
# ``Annotated[str, Field(max_length=200), NAME]``.
NAME = PlainText()  # a name, an id, a filter
FREE_TEXT = PlainText(free_text=True)  # a reason, a chat message
