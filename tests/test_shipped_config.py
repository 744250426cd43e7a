"""The shipped `config/` as an IT person starts from it: `check-config` says ok and `run`
then serves every room; what `run` refuses, `check-config` refuses first, with the same
FILE:LINE lines and never a traceback."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, cli, run_service
from tests.whep_client import Viewer, eventually

SHIPPED = ROOT / "config" / "edge.toml"
MONDAY_TIET_1 = "2026-12-07T07:05:00+07:00"  # a school day, tiết 1 of the morning


async def test_check_config_then_run_the_shipped_config(tmp_path: Path) -> None:
    checked = cli("check-config", "--config", str(SHIPPED), check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == f"{SHIPPED}: ok (2 room(s): example, p101)"
    with run_service(
        tmp_path, ["--config", str(SHIPPED)], run_args=["--clock", MONDAY_TIET_1]
    ) as service:
        printed = service.log.read_text()
        assert "room example (class 6A1): " in printed and "room p101 (class 6A1): " in printed

        def rooms() -> dict[str, Any]:
            found: dict[str, Any] = service.health()["rooms"]  # type: ignore[assignment]
            return found

        assert set(rooms()) == {"example", "p101"}
        assert await eventually(lambda: all(r["live"] for r in rooms().values()), 20), rooms()
        # the example room's devices are not on this machine: slates, and it says why
        example = rooms()["example"]
        assert "not plugged in" in example["sources"]["camera"]["error"], example
        token = str(service.links("example")[0]["token"])
        viewer = Viewer(f"{service.base}/whep/example", token, decode_clock=False)
        try:
            assert (await viewer.connect()).status_code == 201
            camera = viewer.stats["camera"]
            assert await eventually(lambda: camera.frames >= 5, 20), viewer.stats  # the slate
        finally:
            await viewer.close()
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(15) == 0
        assert "Traceback" not in service.log.read_text()


def shipped_copy(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    return target / "edge.toml"


def test_a_roster_run_would_refuse_is_refused_by_check_config_first(tmp_path: Path) -> None:
    config = shipped_copy(tmp_path)
    roster = config.parent / "roster.csv"
    with roster.open("a", encoding="utf-8") as out:
        out.write("0101000201;Lê Minh Khoa;7A2\n")
    expected = f"{roster}:6: unknown class '7A2' (expected one of: 6A1)"
    data = ["--data-dir", str(tmp_path / "data")]
    for command in (["check-config"], ["run", "--port", "0"], ["links", "p101"]):
        result = cli(*command, "--config", str(config), *data, check=False)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert result.stderr.splitlines() == [expected], (command, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "data" / "lessons.db").exists()  # refused before touching data
