"""Two pupils, one on a thin link: that one moves to the low renditions and keeps
moving pictures and unbroken sound; the other keeps the high renditions.

The service and each viewer run in network namespaces of the test's own, joined by
veth pairs; `tc tbf` limits what the service sends to viewer A to 400 kb/s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, ROOT, run_service
from tests.netns import available, shape, star

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not available(), reason="needs root and `ip netns` (the CI runs as root)"),
]

Line = dict[str, Any]


class Probe:
    """tests/link_probe.py in a namespace; its JSON lines collected as they come."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[Line] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            self.lines.append({**json.loads(text), "at": time.monotonic()})

    def wait_for(self, condition: Callable[[Line], bool], within: float) -> Line:
        deadline = time.monotonic() + within
        seen = len(self.lines)
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if condition(line):
                    return line
            seen = len(self.lines)
            time.sleep(0.1)
        last = self.lines[-1] if self.lines else None
        raise AssertionError(f"not within {within} s; last: {last}")

    def since(self, moment: float) -> list[Line]:
        return [line for line in self.lines if line["at"] >= moment]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def camera_width(width: int) -> Callable[[Line], bool]:
    return lambda line: bool(line["camera"]["width"] == width)


def test_thin_link_gets_low_renditions_and_climbs_back(tmp_path: Path) -> None:
    with (
        star(2) as (hub, (thin, wide)),
        run_service(tmp_path, ["--demo"], "0.0.0.0", ["ip", "netns", "exec", hub]) as service,
    ):
        token = service.token()
        port = service.base.rsplit(":", 1)[1]
        probes = {
            name: Probe(
                link.client.command(
                    sys.executable,
                    str(ROOT / "tests" / "link_probe.py"),
                    f"http://{link.server_address}:{port}/whep/demo",
                    token,
                    "110",
                )
            )
            for name, link in (("thin", thin), ("wide", wide))
        }
        try:
            for probe in probes.values():
                probe.wait_for(camera_width(1280), within=20)
            limited_at = time.monotonic()
            shape(hub, thin.server_device, 400)
            low = probes["thin"].wait_for(camera_width(640), within=15)
            switch_seconds = low["at"] - limited_at

            window_start = time.monotonic()
            time.sleep(10)
            window = probes["thin"].since(window_start)
            wide_window = probes["wide"].since(limited_at)
            shape(hub, thin.server_device, None)
            lifted_at = time.monotonic()
            back = probes["thin"].wait_for(camera_width(1280), within=40)
            climb_seconds = back["at"] - lifted_at
        finally:
            for probe in probes.values():
                probe.stop()
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "weak-link.json").write_text(
                json.dumps({name: p.lines for name, p in probes.items()}, indent=None)
            )
    camera_frames = window[-1]["camera"]["frames"] - window[0]["camera"]["frames"]
    seconds = window[-1]["at"] - window[0]["at"]
    print(
        f"thin link: low after {switch_seconds:.1f} s, {camera_frames / seconds:.1f} fps, "
        f"worst audio gap {max(line['audio_gap_ms'] for line in window)} ms, "
        f"back to high {climb_seconds:.1f} s after the limit was lifted"
    )
    assert switch_seconds <= 5.0
    assert camera_frames / seconds >= 10, window
    assert all(line["camera"]["width"] == 640 for line in window), "held the low rendition"
    assert max(line["audio_gap_ms"] for line in window) < 300, window
    assert window[-1]["audio_frames"] - window[0]["audio_frames"] > 0.9 * seconds * 50
    assert all(line["camera"]["width"] == 1280 for line in wide_window)
    assert all(line["board"]["width"] == 1920 for line in wide_window)
    assert {line["session"]["video"]["board"] for line in wide_window} == {"high"}
    assert climb_seconds <= 30
