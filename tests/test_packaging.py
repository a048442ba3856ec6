"""The distribution: a wheel built from the repository holds every subpackage and the templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SUBPACKAGES = [
    "core",
    "core/api",
    "core/cli",
    "core/migrations",
    "plugins/channels",
    "plugins/pathways",
    "workflows",
    "tickets",
    "templates",
]


@pytest.mark.slow
def test_wheel_contains_every_subpackage_and_the_templates(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("suifang-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in SUBPACKAGES:
        assert f"suifang/{package}/__init__.py" in names, package
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
