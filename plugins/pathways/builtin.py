"""The built-in pathways: every YAML template shipped under ``templates/pathways/``."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from suifang.core.hooks import hookimpl
from suifang.core.pathways import PathwayRegistry


def builtin_pathways_dir() -> Path:
    with as_file(files("suifang.templates") / "pathways") as path:
        return Path(path)


@hookimpl
def suifang_register_pathways(register: PathwayRegistry) -> None:
    register(builtin_pathways_dir())
