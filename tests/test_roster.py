"""The roster, links and who gets in: `classroom-edge roster import` is all or nothing
with every bad line named; a re-import updates; a revoked link gets 401; a pupil of
6A1 gets into neither 6A2's lesson nor 6A2's recordings."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import ROOT, cli, run_service, write_site

FIXTURES = ROOT / "tests" / "fixtures" / "roster"
ROOMS = {
    "r1": 'class = "6A1"\nalways_live = true\n[mic]\nkind = "test"\n',
    "r2": 'class = "6A2"\nalways_live = true\n[mic]\nkind = "test"\n',
}


def roster(config: Path, *args: str, check: bool = True) -> tuple[int, str, str]:
    done = cli("roster", *args, "--config", str(config), check=check)
    return done.returncode, done.stdout, done.stderr


def test_an_import_with_bad_lines_applies_nothing_and_names_each_line(tmp_path: Path) -> None:
    config = write_site(tmp_path, ROOMS, f'school = "Trường Thử"\ndata_dir = "{tmp_path}/data"\n')
    bad = FIXTURES / "bad.csv"
    code, out, err = roster(config, "import", str(bad), check=False)
    assert code == 1 and not out
    assert err.splitlines() == [
        f"{bad}:4: missing Mã định danh",
        f"{bad}:5: empty Họ và tên",
        f"{bad}:6: Mã định danh 079215000102 is already on line 3",
        f"{bad}:7: unknown class '6A9' (expected one of: 6A1, 6A2)",
        f"{bad}: nothing imported (4 problem(s))",
    ]
    assert roster(config, "list")[1] == ""  # nothing applied

    code, out, _ = roster(config, "import", str(FIXTURES / "good.csv"))
    assert out.strip().endswith("7 pupils of 6A1, 6A2: 7 new, 0 changed, 0 left"), out
    listed = [line.split("\t") for line in roster(config, "list")[1].splitlines()]
    # Vietnamese class-list order: by given name, Đ after D
    assert [row[2] for row in listed if row[0] == "6A1"] == [
        "Nguyễn Văn An",
        "Trần Thị Bình",
        "Lê Văn Cường",
        "Hoàng Thị Dung",
        "Phạm Minh Đức",
    ]

    # a new list of 6A1 (English headers, commas): one joins, one has left; 6A2 untouched
    code, out, _ = roster(config, "import", str(FIXTURES / "update-6a1.csv"))
    assert out.strip().endswith("5 pupils of 6A1: 1 new, 0 changed, 1 left"), out
    listed = [line.split("\t") for line in roster(config, "list")[1].splitlines()]
    assert sorted(row[1] for row in listed if row[0] == "6A1") == [
        "079215000101",
        "079215000103",
        "079215000104",
        "079215000105",
        "079215000108",
    ]
    assert len([row for row in listed if row[0] == "6A2"]) == 2


def test_revoked_links_and_other_classes_are_refused(tmp_path: Path) -> None:
    site = f'school = "Trường Thử"\nroster = "{FIXTURES / "good.csv"}"\n'
    config = write_site(tmp_path, ROOMS, site)
    with run_service(tmp_path, ["--config", str(config)]) as service:
        links = {
            room: json.loads(
                cli(
                    "links",
                    room,
                    "--config",
                    str(config),
                    "--data-dir",
                    str(service.data_dir),
                    "--json",
                ).stdout
            )
            for room in ("r1", "r2")
        }
        an = next(x for x in links["r1"] if x["student_id"] == "079215000101")
        offer = "v=0\r\n"  # the token is checked before the offer

        def whep(room: str, token: str) -> int:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
            return httpx.post(
                f"{service.base}/whep/{room}", content=offer, headers=headers
            ).status_code

        assert whep("r1", an["token"]) == 400  # let in (the offer is what is wrong)
        assert whep("r2", an["token"]) == 401  # a pupil of 6A1 in 6A2's lesson
        page = httpx.get(f"{service.base}/join/{an['token']}")
        assert page.status_code == 200 and "Nguyễn Văn An" in page.text
        recordings = httpx.get(
            f"{service.base}/api/recordings/6A2", headers={"Authorization": f"Bearer {an['token']}"}
        )
        assert recordings.status_code == 403  # 6A2's recorded lessons: not for 6A1

        # a class link shows the class list to pick from, never the pupils' IDs
        class_page = httpx.get(f"{service.base}/join/{links['r1'][0]['token']}")
        assert "Trần Thị Bình" in class_page.text and "079215000102" not in class_page.text

        revoked = cli(
            "links",
            "r1",
            "--revoke",
            "079215000101",
            "--json",
            "--config",
            str(config),
            "--data-dir",
            str(service.data_dir),
        )
        fresh = json.loads(revoked.stdout)
        assert [x["student_id"] for x in fresh] == ["079215000101"]
        assert fresh[0]["token"] != an["token"]
        assert whep("r1", an["token"]) == 401  # the old link no longer works
        assert httpx.get(f"{service.base}/join/{an['token']}").status_code == 401
        assert whep("r1", fresh[0]["token"]) == 400  # the new one does

        cli(
            "links",
            "r1",
            "--revoke-class",
            "--config",
            str(config),
            "--data-dir",
            str(service.data_dir),
        )
        assert whep("r1", links["r1"][0]["token"]) == 401  # the old class link

        sheet = tmp_path / "sheet.html"
        cli(
            "links",
            "r1",
            "--sheet",
            str(sheet),
            "--config",
            str(config),
            "--data-dir",
            str(service.data_dir),
        )
        text = sheet.read_text(encoding="utf-8")
        assert text.count("<svg") == 6 and "Phạm Minh Đức" in text  # class link + 5 pupils
        assert "@page" in text and "break-inside: avoid" in text
