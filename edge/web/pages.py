"""The service's HTML pages: a static file with its settings (JSON) filled in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources

from fastapi.responses import HTMLResponse

STATIC = resources.files("edge.web") / "static"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def page(name: str, config: Mapping[str, object]) -> HTMLResponse:
    """`static/NAME` with `{{CONFIG}}` replaced by `config`, safe inside a <script>."""
    text = (STATIC / name).read_text(encoding="utf-8")
    payload = json.dumps(config, ensure_ascii=False).replace("</", "<\\/")
    return HTMLResponse(text.replace("{{CONFIG}}", payload), headers=NO_STORE)
