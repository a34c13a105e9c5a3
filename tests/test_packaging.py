"""The wheel installs one import package, `diglot`, with no test fakes, and knows its version."""

from __future__ import annotations

import email.parser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import diglot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """diglot's wheel, built from the checkout without touching the network."""
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = ("pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "--wheel-dir")
    subprocess.run(
        [sys.executable, "-m", *pip_wheel, str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("diglot-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_installs_only_the_diglot_package(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"diglot", f"diglot-{diglot.__version__}.dist-info"}
    names = set(wheel.namelist())
    for module in ("__main__.py", "proxy/cli.py", "proxy/demo.py", "translators/__init__.py"):
        assert f"diglot/{module}" in names
    assert not [name for name in names if "fixtures" in name or "/tests/" in name]
    assert "diglot/py.typed" in names


def test_the_wheel_metadata_reads_well(wheel: zipfile.ZipFile) -> None:
    metadata_name = f"diglot-{diglot.__version__}.dist-info/METADATA"
    metadata = email.parser.Parser().parsestr(wheel.read(metadata_name).decode())
    assert metadata["Name"] == "diglot"
    assert metadata["Version"] == diglot.__version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Summary"].startswith("A proxy that serves OpenAI Responses clients")
    assert metadata.get_all("Project-URL")
    assert "Programming Language :: Python :: 3.11" in metadata.get_all("Classifier")
    assert any(name.endswith("licenses/LICENSE") for name in wheel.namelist())
    entry_points = wheel.read(f"diglot-{diglot.__version__}.dist-info/entry_points.txt").decode()
    assert "diglot = diglot.proxy.cli:main" in entry_points


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag(flag: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "diglot", flag], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (0, f"diglot {diglot.__version__}\n")
