"""Small things people run into: a second `run` on the same data dir, a link copied with
the full stop after it, a link without its token, a bare `archive`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, cli, run_service


def test_a_second_run_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with run_service(tmp_path, ["--demo"]) as first:
        lessons = sorted((first.data_dir / "recordings").iterdir())
        started = time.monotonic()
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge",
                "run",
                "--demo",
                "--data-dir",
                str(first.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert time.monotonic() - started < 30
        assert f"(pid {first.process.pid}) already uses {first.data_dir}" in second.stderr
        assert "Traceback" not in second.stderr
        assert sorted((first.data_dir / "recordings").iterdir()) == lessons  # no new lesson
        assert first.process.poll() is None and first.health()["status"] == "ok"
    # once the first has stopped, the data dir is free again
    with run_service(tmp_path, ["--demo"]) as again:
        assert again.health()["status"] == "ok"


@pytest.mark.parametrize("trailer", [".", ")", ").", "%29", ","])
def test_a_link_copied_with_what_follows_it_still_opens(
    demo_service: Service, trailer: str
) -> None:
    token = demo_service.token()
    page = httpx.get(f"{demo_service.base}/join/{token}{trailer}", timeout=10)
    assert page.status_code == 303, page.text
    assert page.headers["location"] == f"/join/{token}"
    opened = httpx.get(f"{demo_service.base}/join/{token}{trailer}", follow_redirects=True)
    assert opened.status_code == 200 and f'"token": "{token}"' in opened.text


@pytest.mark.parametrize("path", ["/join/", "/join", "/join/.", "/join/abc"])
def test_a_link_without_a_valid_token_says_so_in_words(demo_service: Service, path: str) -> None:
    page = httpx.get(f"{demo_service.base}{path}", timeout=10, follow_redirects=True)
    assert page.status_code in (401, 404), page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "Không vào được lớp học" in page.text and "detail" not in page.text


def test_bare_archive_asks_for_the_action_only() -> None:
    result = cli("archive", check=False)
    assert result.returncode == 2
    assert "the following arguments are required: action" in result.stderr
    assert "lessons" not in result.stderr.splitlines()[-1]
