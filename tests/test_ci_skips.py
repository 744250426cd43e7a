"""In CI a skip is a failure that says what was missing; locally skips stay allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SKIPPING = """
import pytest

pytestmark = []


def test_needs_janus():
    pytest.skip("needs Debian's janus (README test command)")


@pytest.mark.skipif(True, reason="needs Debian's ffmpeg")
def test_needs_ffmpeg():
    pass


@pytest.fixture
def tmpfs():
    pytest.skip("mounting a tmpfs needs root")


def test_in_a_fixture(tmpfs):
    pass


@pytest.mark.xfail(reason="known")
def test_expected_to_fail():
    assert False


def test_runs():
    assert True
"""

SKIPPED_MODULE = """
import pytest

pytest.importorskip("no_such_module_for_sure")
"""


def run_inner(
    tmp_path: Path, ci: str | None, test: str = SKIPPING
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(test, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.ci_skips",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_in_ci_every_skip_fails_and_says_why(tmp_path: Path) -> None:
    result = run_inner(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    summary = result.stdout.splitlines()[-1]
    # a skip in the call fails; one at setup (a skipif mark, a fixture) errors
    assert "1 failed" in summary and "2 errors" in summary and "1 passed" in summary, summary
    assert "1 xfailed" in summary and "skipped" not in summary, summary
    for why in ("needs Debian's janus", "needs Debian's ffmpeg", "mounting a tmpfs needs root"):
        assert f"skipped in CI, where every test must run: {why}" in result.stdout, result.stdout


def test_in_ci_a_skipped_module_fails(tmp_path: Path) -> None:
    result = run_inner(tmp_path, "true", SKIPPED_MODULE)
    assert result.returncode != 0, result.stdout
    assert "skipped in CI, where every test must run: could not import" in result.stdout


def test_outside_ci_skips_are_allowed(tmp_path: Path) -> None:
    for ci in (None, "", "false"):
        result = run_inner(tmp_path, ci)
        assert result.returncode == 0, result.stdout
        assert "3 skipped" in result.stdout.splitlines()[-1], result.stdout
