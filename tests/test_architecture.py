"""The layering CI enforces (pyproject.toml's import-linter contracts) covers the whole kernel."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
SURFACES = {"api", "cli"}


def _kernel_contract() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["name"] == "The kernel imports only the kernel")


def test_every_kernel_module_is_held_to_the_kernel_contract() -> None:
    """A new module in core/ is kernel unless it is a surface: forgetting to list it would
    let it import the domain unnoticed."""
    kernel = {
        path.stem if path.is_file() else path.name
        for path in (ROOT / "core").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists() and path.name not in SURFACES)
    }
    listed = {name.removeprefix("suifang.core.") for name in _kernel_contract()["source_modules"]}
    assert listed == kernel


def test_the_architecture_guide_names_every_contract() -> None:
    guide = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in config["tool"]["importlinter"]["contracts"]:
        assert contract["name"] in guide, contract["name"]
