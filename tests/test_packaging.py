"""The distribution: a wheel built from the repository holds every subpackage and the templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
REQUIRED = ["core", "plugins/channels", "plugins/pathways", "workflows", "tickets", "templates"]


def _source_packages() -> list[str]:
    """Every folder of the repository that is a package (has __init__.py), tests excepted."""
    return sorted(
        init.parent.relative_to(ROOT).as_posix()
        for init in ROOT.rglob("__init__.py")
        if not init.relative_to(ROOT).parts[0].startswith((".", "tests", "build"))
    )


@pytest.mark.slow
def test_wheel_contains_every_subpackage_and_the_templates(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-v",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    # An install that prints a page of setuptools warnings looks broken to whoever runs it.
    assert "is absent from the `packages` configuration" not in build.stdout + build.stderr
    wheel = next(tmp_path.glob("suifang-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = _source_packages()
    assert set(REQUIRED) <= set(packages)
    for package in packages:
        assert f"suifang/{package}/__init__.py" in names, f"{package} is missing from the wheel"
    assert not any(name.startswith("suifang/tests/") for name in names)
    assert "suifang/__init__.py" not in names  # suifang is a namespace package
    expected_data = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "templates").rglob("*")
        if p.is_file() and p.suffix in {".yaml", ".j2", ".json", ".md", ".csv", ".txt"}
    ]
    for data_file in expected_data:
        assert f"suifang/{data_file}" in names, data_file
    migrations = [p.name for p in (ROOT / "core/migrations/versions").glob("*.py")]
    for migration in migrations:
        assert f"suifang/core/migrations/versions/{migration}" in names
    assert "suifang/core/migrations/script.py.mako" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "suifang = suifang.core.cli:_entry" in zipfile.ZipFile(wheel).read(entry_points).decode()
