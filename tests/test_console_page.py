"""The teacher's console on the board, in Debian Chromium: buttons a finger can hit
(48 px at least), what pupils see as small live pictures, the recording state in words;
also readable on a phone. Screenshots go to artifacts/."""

from __future__ import annotations

from pathlib import Path

from tests.browser_probe import chromium
from tests.conftest import ARTIFACTS, run_service

SMALL_BUTTONS = """
() => Array.from(document.querySelectorAll('button, a#sheet, .home label'))
  .filter((b) => b.offsetParent !== null)
  .map((b) => { const r = b.getBoundingClientRect();
                return {text: b.textContent.trim(), w: r.width, h: r.height}; })
  .filter((b) => b.h < 48 || b.w < 48)
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
