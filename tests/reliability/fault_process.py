"""``suifang worker`` / ``suifang api`` with the fault suite's pathway registered.

The fault suite runs the real CLI commands as separate processes it can SIGKILL; this script
only adds ``fault_pathway.yaml`` to the built-in plugins first, exactly as an installed
pathway plugin would register it::

    python tests/reliability/fault_process.py worker
"""

from __future__ import annotations

import sys
from pathlib import Path

from suifang.core import plugins
from suifang.core.hooks import hookimpl
from suifang.core.pathways import PathwayRegistry

PATHWAY = Path(__file__).resolve().with_name("fault_pathway.yaml")


@hookimpl
def suifang_register_pathways(register: PathwayRegistry) -> None:
    register(PATHWAY)


if __name__ == "__main__":
    plugins.DEFAULT_PLUGINS["fault-drill-pathway"] = "__main__"
    from suifang.core.cli import main

    sys.exit(main(sys.argv[1:]))
