"""The board's own browser is staff at every address of the mini-PC, not only at
127.0.0.1: the teacher opens the console at the address the service prints. Anyone else
is sent to the login, as for /admin; an unknown room is a page that says so. Two hosts of
the test's own (network namespaces): the mini-PC and a machine elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SMALL_ROOM, run_service, write_site
from tests.netns import Host, available, two_hosts

pytestmark = pytest.mark.skipif(
    not available(), reason="needs root and `ip netns` (the CI runs as root)"
)

FETCH = """
import http.client, json, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
connection = http.client.HTTPConnection(host, port, timeout=10)
connection.request("GET", path)
answer = connection.getresponse()
body = answer.read().decode(errors="replace")
print(json.dumps({"status": answer.status, "location": answer.getheader("location"),
                  "type": answer.getheader("content-type"), "body": body[:4000]}))
"""


def fetch(host: Host, address: str, port: int, path: str) -> dict[str, str | int | None]:
    """A GET sent from `host` (no redirect followed)."""
    done = subprocess.run(
        host.command(sys.executable, "-c", FETCH, address, str(port), path),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answer: dict[str, str | int | None] = json.loads(done.stdout)
    return answer


def test_the_console_at_the_printed_address_is_the_boards_and_others_log_in(
    tmp_path: Path,
) -> None:
    config = write_site(tmp_path / "site", {"r1": SMALL_ROOM})
    with (
        two_hosts() as (board, elsewhere),
        run_service(tmp_path, ["--config", str(config)], board.address, board.command()) as service,
    ):
        port = int(service.base.rsplit(":", 1)[1])
        printed = service.log.read_text()
        assert f"serving on http://{board.address}:{port}" in printed, printed
        # the board's own browser, at the printed (LAN) address
        own = fetch(board, board.address, port, "/console/r1")
        assert own["status"] == 200 and "text/html" in str(own["type"]), own
        assert '<html lang="vi">' in str(own["body"])
        sheet = fetch(board, board.address, port, "/sheet/r1")
        assert sheet["status"] == 200, sheet
        # another machine: the login, then back to the console
        for path in ("/console/r1", "/sheet/r1"):
            away = fetch(elsewhere, board.address, port, path)
            assert away["status"] == 303 and away["location"] == f"/login?next={path}", away
        old = fetch(elsewhere, board.address, port, "/control/r1")  # to the console's login
        assert old["status"] == 301 and old["location"] == "/console/r1", old
        login = fetch(elsewhere, board.address, port, "/login?next=/console/r1")
        assert login["status"] == 200 and 'value="/console/r1"' in str(login["body"])
        # never raw JSON for a person
        unknown = fetch(board, board.address, port, "/console/r9")
        assert unknown["status"] == 404 and "text/html" in str(unknown["type"]), unknown
        assert "Không có phòng r9" in str(unknown["body"]) and "r1" in str(unknown["body"])
        api = fetch(elsewhere, board.address, port, "/api/rooms/r1/console")
        assert api["status"] == 403  # the console's API stays staff-only
