"""The admin page in Debian Chromium, for a room whose camera has no PTZ (most
classrooms): after a login, three refreshes later it still says the service works, the
camera note is a plain note (not an error), and the page threw nothing."""

from __future__ import annotations

import time
from pathlib import Path

from edge.access.staff import set_password
from tests.browser_probe import chromium
from tests.conftest import ARTIFACTS, SMALL_ROOM, run_service, write_site

PASSWORD = "mật-khẩu-tổ-CNTT"


def test_admin_page_of_a_room_without_ptz_shows_no_error(tmp_path: Path) -> None:
    config = write_site(tmp_path / "site", {"p101": SMALL_ROOM})
    set_password(tmp_path / "data", PASSWORD)
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        run_service(tmp_path, ["--config", str(config)]) as service,
        chromium(viewport={"width": 1280, "height": 900}, locale="vi-VN") as context,
    ):
        page = context.new_page()
        faults: list[str] = []
        page.on("pageerror", lambda error: faults.append(str(error)))
        page.on("console", lambda m: faults.append(m.text) if m.type == "error" else None)
        page.on(
            "response",
            lambda r: faults.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        page.goto(f"{service.base}/admin")
        if "/login" in page.url:  # the mini-PC's own screen is staff without one
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{service.base}/admin")
        page.wait_for_selector(".camera-note:not(:empty)", timeout=10_000)
        started = time.monotonic()
        requests: list[str] = []
        page.on(
            "request", lambda r: requests.append(r.url) if "/api/admin/state" in r.url else None
        )
        while len(requests) < 3 and time.monotonic() - started < 15:  # refreshes every 3 s
            page.wait_for_timeout(500)
        page.wait_for_timeout(500)
        assert len(requests) >= 3, requests
        health = page.inner_text("#health")
        assert health in ("Hoạt động tốt", "Có sự cố"), health
        assert "Mất kết nối" not in page.inner_text("body")
        note = page.locator(".camera-note")
        assert "không có PTZ" in note.inner_text() or "không điều khiển" in note.inner_text()
        assert note.get_attribute("class") == "camera-note note"  # a note, not a red error
        assert page.locator(".pad button").first.is_disabled()
        assert not faults, faults
        page.screenshot(path=str(ARTIFACTS / "admin-1280x900.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "admin-390x844.png"))
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the admin page is {width} px wide on a phone"
