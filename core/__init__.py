"""suifang's core.

Two layers live here (see DESIGN.md):

- the **kernel** — ``config``, ``db``, ``models``, ``hooks`` and the plugin contracts
  (``channels``, ``pathways``), ``plugins`` (manager + typed facade), ``security``,
  ``telemetry``, ``temporal`` and ``runtime``. It imports nothing from the domain folders.
- the **surfaces** — ``api`` (FastAPI app factory) and ``cli``: the composition root that
  assembles kernel, domain (``workflows``, ``tickets``) and plugins.
"""
