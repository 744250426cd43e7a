"""Small edits of the staff's TOML files that keep their comments and layout."""

from __future__ import annotations

import re
from collections.abc import Mapping

Scalar = str | int | float | bool

_HEADER = re.compile(r"^\s*\[")


def _literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def set_table(text: str, header: str, values: Mapping[str, Scalar]) -> str:
    """`text` with the table `[header]` holding exactly `values` (replaced in place, its
    comment lines kept, or appended at the end)."""
    lines = text.splitlines()
    wanted = f"[{header}]"
    body = [f"{key} = {_literal(value)}" for key, value in values.items()]
    start = next((i for i, line in enumerate(lines) if line.split("#")[0].strip() == wanted), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join([*lines, "", wanted, *body]) + "\n"
    end = start + 1
    while end < len(lines) and not _HEADER.match(lines[end]):
        end += 1
    kept = [line for line in lines[start + 1 : end] if line.strip().startswith("#")]
    trailing = [""] if end < len(lines) else []
    return "\n".join([*lines[: start + 1], *kept, *body, *trailing, *lines[end:]]) + "\n"
