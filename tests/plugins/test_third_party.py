"""The third-party path for real: pip-install a plugin distribution into a fresh venv, find it
through its entry point, select it by URL scheme, and run the conformance suite against it.

A second distribution whose import fails is installed beside it and must not take it down.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY = ROOT / "tests" / "thirdparty"


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("third-party-venv")
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(ROOT) + "[test]",
            str(THIRD_PARTY / "mclease_jsonfile"),
            str(THIRD_PARTY / "mclease_broken"),
        ],
        check=True,
    )
    return home


def run(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(home / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_the_installed_plugin_is_listed_and_the_broken_one_reported(plugin_venv: Path) -> None:
    result = run(plugin_venv, "mclease", "backends")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"jsonfile", "memory", "sqlite"}
    assert rows["jsonfile"][1:3] == ["mclease-jsonfile", "0.0.1"]
    assert "plugin 'broken' from mclease-broken failed: ModuleNotFoundError" in result.stderr


def test_the_plugin_is_selected_by_its_url_scheme(plugin_venv: Path, tmp_path: Path) -> None:
    script = (
        "from mclease_core import open_storage, UnknownBackendError\n"
        f"store = open_storage('jsonfile://{tmp_path}/s.json')\n"
        "print(type(store).__module__, type(store).__name__)\n"
        "try:\n    open_storage('nosuch://x')\n"
        "except UnknownBackendError as exc:\n    print(exc)\n"
    )
    result = run(plugin_venv, "python", "-c", script)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "mclease_jsonfile JsonFileStorage"
    assert "installed schemes: jsonfile, memory, sqlite" in second


def test_the_plugin_passes_the_conformance_suite(plugin_venv: Path, tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    shutil.copytree(THIRD_PARTY / "mclease_jsonfile" / "tests", tests)
    result = run(
        plugin_venv,
        "python",
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        str(tests),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary, summary
    assert "failed" not in summary, summary
    # only capability tests may skip (a file store has no server process to freeze or restart)
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("capability:" in line for line in skips), skips
    print(summary, file=sys.stderr)
