"""The teacher's console on the board, in Debian Chromium: buttons a finger can hit
(48 px at least), what pupils see as small live pictures, the recording state in words;
also readable on a phone; an extra lesson started from it when none is live. Screenshots
go to artifacts/."""

from __future__ import annotations

from pathlib import Path

from tests.browser_probe import chromium
from tests.conftest import ARTIFACTS, run_service, write_site
from tests.test_bell import ROOM, SITE

SMALL_BUTTONS = """
() => Array.from(document.querySelectorAll('button, select, a#sheet, .home label'))
  .filter((b) => b.offsetParent !== null)
  .map((b) => { const r = b.getBoundingClientRect();
                return {text: b.textContent.trim(), w: r.width, h: r.height}; })
  .filter((b) => b.h < 48 || b.w < 48)
"""
OUTSIDE = """
() => Array.from(document.querySelectorAll('footer > *, footer .group > *'))
  .filter((e) => e.offsetParent !== null)
  .map((e) => ({text: e.textContent.trim(), right: e.getBoundingClientRect().right}))
  .filter((e) => e.right > document.documentElement.clientWidth)
"""
PICTURES = """
() => ['seen-camera', 'seen-board'].map((id) => {
  const img = document.getElementById(id);
  return {id, width: img.naturalWidth, height: img.naturalHeight, shown: img.offsetParent !== null};
})
"""


def test_the_console_on_the_board_and_on_a_phone(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        run_service(tmp_path, ["--demo"]) as service,
        chromium(viewport={"width": 1920, "height": 1080}, locale="vi-VN") as context,
    ):
        page = context.new_page()
        faults: list[str] = []
        page.on("pageerror", lambda error: faults.append(str(error)))
        page.goto(f"{service.base}/console/demo")  # the board's own browser: staff
        page.wait_for_function("document.getElementById('badge').textContent.includes('ĐANG')")
        page.wait_for_function(
            "['seen-camera', 'seen-board']"
            ".every((id) => document.getElementById(id).naturalWidth > 0)",
            timeout=15_000,
        )
        assert page.inner_text("#badge") == "ĐANG PHÁT TRỰC TIẾP"
        assert page.inner_text("#rec") == "● Đang ghi hình (lưu vào thư viện sau tiết học)"
        pictures = page.evaluate(PICTURES)
        assert all(p["shown"] and p["width"] >= 160 for p in pictures), pictures
        assert page.evaluate(SMALL_BUTTONS) == []
        page.screenshot(path=str(ARTIFACTS / "console-1920x1080.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(500)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the console is {width} px wide on a phone"
        page.screenshot(path=str(ARTIFACTS / "console-390x844.png"))
        assert not faults, faults


def test_an_extra_lesson_from_the_console(tmp_path: Path) -> None:
    """No lesson live (12:00, the morning's periods are over): the console offers an extra
    lesson, 48 px and inside the screen on the board and on a phone either way up; started,
    it goes live and offers to extend or end it instead."""
    ARTIFACTS.mkdir(exist_ok=True)
    config = write_site(tmp_path / "site", {"r1": ROOM}, SITE)
    clock = ["--clock", "2026-11-25T12:00:00+07:00"]
    with (
        run_service(tmp_path, ["--config", str(config)], run_args=clock) as service,
        chromium(viewport={"width": 1920, "height": 1080}, locale="vi-VN") as context,
    ):
        page = context.new_page()
        faults: list[str] = []
        page.on("pageerror", lambda error: faults.append(str(error)))
        page.goto(f"{service.base}/control/r1")  # the old page's address: the console
        assert page.url == f"{service.base}/console/r1"
        page.wait_for_selector("#start", state="visible")
        assert page.inner_text("#badge") == "CHƯA PHÁT"
        assert page.inner_text("#start") == "Bắt đầu tiết học thêm"
        assert page.inner_text("label[for=minutes]") == "Tiết học thêm"
        assert page.input_value("#minutes") == "45"
        assert not page.is_visible("#end") and not page.is_visible("[data-extend]")
        for width, height in ((1920, 1080), (844, 390), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(300)
            assert page.evaluate(SMALL_BUTTONS) == [], (width, height)
            assert page.evaluate(OUTSIDE) == [], (width, height)
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"the console is {scroll} px wide at {width}×{height}"
            page.screenshot(
                path=str(ARTIFACTS / f"console-idle-{width}x{height}.png"), full_page=True
            )
        page.select_option("#minutes", "30")
        page.click("#start")
        page.wait_for_function("document.getElementById('badge').textContent.includes('ĐANG')")
        assert "Tiết học thêm · 12:00–12:30" in page.inner_text("#lesson")
        assert page.is_visible("#end") and not page.is_visible("#start")
        for width, height in ((390, 844), (844, 390), (1920, 1080)):
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(300)
            assert page.evaluate(SMALL_BUTTONS) == [] and page.evaluate(OUTSIDE) == []
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"the console is {scroll} px wide at {width}×{height}"
            page.screenshot(
                path=str(ARTIFACTS / f"console-extra-{width}x{height}.png"), full_page=True
            )
        assert not faults, faults


def test_the_principals_report_fits_a_phone(tmp_path: Path) -> None:
    """Wide tables scroll inside the page; the page itself is as wide as the phone."""
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        run_service(tmp_path, ["--demo"]) as service,
        chromium(viewport={"width": 390, "height": 844}, locale="vi-VN") as context,
    ):
        page = context.new_page()
        page.goto(f"{service.base}/reports")
        assert "Báo cáo điểm danh học trực tuyến" in page.inner_text("h1")
        assert "Phát liên tục" in page.inner_text("body")  # the demo's stream, held now
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the report is {width} px wide on a phone"
        page.screenshot(path=str(ARTIFACTS / "report-390x844.png"))
        page.set_viewport_size({"width": 1280, "height": 800})
        page.screenshot(path=str(ARTIFACTS / "report-1280x800.png"), full_page=True)
