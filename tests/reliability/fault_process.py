"""``suifang worker`` / ``suifang api`` with the fault suite's pathway registered.

The fault suite runs the real CLI commands as separate processes it can SIGKILL; this script
only registers ``fault_pathway.yaml`` with every plugin manager it builds, exactly as an installed
pathway plugin would register it::

    python tests/reliability/fault_process.py worker
"""

from __future__ import annotations

import functools
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
    plugins.get_plugin_manager = functools.partial(
        plugins.get_plugin_manager, extra=[("fault-drill-pathway", sys.modules[__name__])]
    )
    from suifang.core.cli import main

    sys.exit(main(sys.argv[1:]))
