"""The API's JSON parser: bounded nesting, bounded integers and valid text, or a 400 naming the field.

Python's json module recurses once per nesting level (a 100,000-deep body is a RecursionError),
converts integers of any length until its 4300-digit limit raises, and decodes `"\\ud800"` to a
lone surrogate (`"\\u0000"` to a NUL) that the databases cannot store. All are refused here,
before a view runs.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

from prefloop.core.errors import InvalidBody

# Beyond any 128-bit id; nothing the API takes is larger, so longer literals are never converted.
MAX_INT_DIGITS = 40
# Text neither database stores: PostgreSQL refuses both, SQLite fails to encode a surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


UNSTORABLE_TEXT = "contains a NUL character or a lone surrogate (not valid Unicode text)"


class _LongInteger:
    """An integer literal too long to convert, kept until the walk can name its field."""

    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits


def _parse_int(literal: str):
    digits = len(literal.lstrip("-"))
    return int(literal) if digits <= MAX_INT_DIGITS else _LongInteger(digits)


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser (strict: no NaN or Infinity) with the bounds above."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        max_depth = settings.PREFLOOP_MAX_JSON_DEPTH
        try:
            data = json.loads(stream.read().decode(encoding), parse_int=_parse_int, parse_constant=strict_constant)
        except RecursionError:
            raise InvalidBody("body", f"nested deeper than {max_depth} levels (PREFLOOP_MAX_JSON_DEPTH)") from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise InvalidBody("body", f"not valid JSON: {exc}") from None
        check_json_value(data, max_depth=max_depth)
        return data


def check_json_value(data, *, max_depth: int) -> None:
    """Raise InvalidBody for the first container deeper than `max_depth`, integer literal too long
    or string (key or value) with a NUL or lone surrogate. Iterative: the depth is the input's to choose."""
    pending = [(data, "", 1)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                raise InvalidBody(path or "body", UNSTORABLE_TEXT)
        elif isinstance(value, _LongInteger):
            raise InvalidBody(
                path or "body", f"an integer of {value.digits} digits; at most {MAX_INT_DIGITS} are accepted"
            )
        elif isinstance(value, (dict, list)):
            if depth > max_depth:
                raise InvalidBody(path or "body", f"nested deeper than {max_depth} levels (PREFLOOP_MAX_JSON_DEPTH)")
            if isinstance(value, dict):
                for key, item in value.items():
                    name = f"{path}.{key}" if path else key
                    if _UNSTORABLE.search(key):
                        raise InvalidBody(ascii(name), f"a key that {UNSTORABLE_TEXT}")
                    pending.append((item, name, depth + 1))
            else:
                pending.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
