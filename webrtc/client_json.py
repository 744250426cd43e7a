"""JSON that clients send (data channel messages, HTTP bodies), read within bounds."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

MAX_DEPTH = 32
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def parse_client_json(data: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """`data` parsed as JSON; ValueError unless it is UTF-8, nests at most `max_depth`
    arrays and objects (json.loads, and whatever walks what it returns, would end in a
    RecursionError), and holds no NaN, infinite number or lone surrogate (which json.loads
    takes but a JSON response, or a database, refuses)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    brackets = _BRACKETS.findall(_STRINGS.sub("", text))
    steps = itertools.accumulate(1 if bracket in "[{" else -1 for bracket in brackets)
    if max(steps, default=0) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth}")
    value = json.loads(text)
    json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")  # NaN, inf, surrogates
    return value
