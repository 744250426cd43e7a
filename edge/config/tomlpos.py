"""Where a key of a TOML file stands: maps key paths to line numbers for error messages."""

from __future__ import annotations

import re
from collections.abc import Sequence

_TABLE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)

Path = tuple[str | int, ...]


def _split(dotted: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', dotted)]


def key_lines(text: str) -> dict[Path, int]:
    """Line (1-based) of every table header and key, by path; array tables get indices."""
    lines: dict[Path, int] = {}
    counters: dict[Path, int] = {}
    table: Path = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _TABLE.match(line)
        if header and not _KEY.match(line):
            parts: list[str | int] = list(_split(header.group(2)))
            if header.group(1) == "[[":
                base = tuple(parts)
                counters[base] = counters.get(base, -1) + 1
                parts.append(counters[base])
            else:
                parts = _with_indices(parts, counters)
            table = tuple(parts)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            path = table + tuple(_split(key.group(1)))
            lines.setdefault(path, number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_multiline = quote
    return lines


def _with_indices(parts: Sequence[str | int], counters: dict[Path, int]) -> list[str | int]:
    """`[a.b]` below `[[a]]` means a[last].b."""
    out: list[str | int] = []
    for part in parts:
        out.append(part)
        index = counters.get(tuple(p for p in out if isinstance(p, str)))
        if index is not None:
            out.append(index)
    return out


def line_of(lines: dict[Path, int], path: Sequence[str | int]) -> int:
    """The line of `path` or of its nearest ancestor present in the file (1 when none)."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return 1
