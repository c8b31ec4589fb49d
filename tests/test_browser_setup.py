"""`make test` finds the dashboard test's browser, installs one where it can, or says what to.

The real script runs here, with PATH narrowed to a folder holding only what each case needs,
so the machine's own Chromium is out of sight where a case says there is none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "ensure-browser.sh"


def _lookup(tmp_path: Path, tools: dict[str, str], *args: str, **env: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in tools.items():
        (bin_dir / name).symlink_to(target)
    return subprocess.run(
        ["/bin/sh", str(SCRIPT), *args],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def _system(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not on this machine")
    return path


def _package() -> str:
    """The distribution's Chromium package: Ubuntu names it differently from Debian."""
    release = Path("/etc/os-release")
    ubuntu = release.exists() and "ID=ubuntu" in release.read_text()
    return "chromium-browser" if ubuntu else "chromium"


def test_a_browser_on_the_path_is_used(tmp_path):
    browser = tmp_path / "google-chrome"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    found = _lookup(tmp_path, {"google-chrome": str(browser), "id": _system("id")})
    assert found.returncode == 0
    assert found.stdout.strip() == str(tmp_path / "bin" / "google-chrome")


def test_cltv_browser_wins_and_a_wrong_one_is_named(tmp_path):
    chosen = _lookup(tmp_path, {}, CLTV_BROWSER="/bin/sh")
    assert (chosen.returncode, chosen.stdout.strip()) == (0, "/bin/sh")
    (tmp_path / "again").mkdir()
    wrong = _lookup(tmp_path / "again", {}, CLTV_BROWSER="/no/such/chrome")
    assert wrong.returncode == 1
    assert "CLTV_BROWSER=/no/such/chrome is not an executable file" in wrong.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root here")
def test_apt_as_root_installs_the_distributions_chromium(tmp_path):
    planned = _lookup(
        tmp_path,
        {"id": _system("id"), "apt-get": _system("apt-get")},
        CLTV_BROWSER_DRY_RUN="1",
    )
    assert planned.returncode == 0, planned.stderr
    package = (
        "chromium-browser" if "ID=ubuntu" in Path("/etc/os-release").read_text() else "chromium"
    )
    assert planned.stderr.strip() == f"would run: apt-get install -y -qq {package}"


def test_nothing_found_and_no_way_to_install_is_one_line_of_advice(tmp_path):
    refused = _lookup(tmp_path, {"id": _system("id"), "uname": _system("uname")})
    assert refused.returncode == 1
    assert refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("make test needs Chrome or Chromium for the dashboard test")
    assert "chromium" in lines[0] and "CLTV_BROWSER=" in lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="the advice differs for a user without sudo")
def test_the_advice_without_install_is_a_command_that_works(tmp_path):
    # the test's own lookup (pytest without make) never installs: it says what would
    advised = _lookup(
        tmp_path, {"id": _system("id"), "apt-get": _system("apt-get")}, "--no-install"
    )
    assert advised.returncode == 1
    assert f"run: apt-get update && apt-get install {_package()} (" in advised.stderr


def test_make_test_looks_for_the_browser_before_pytest(project_root):
    dry = subprocess.run(
        ["make", "-n", "test"], cwd=project_root, capture_output=True, text=True, check=True
    ).stdout
    lookup = dry.index("ensure-browser.sh")
    assert lookup < dry.index("pytest")
    assert 'CLTV_BROWSER="$browser"' in dry
