"""suifang's core.

Two layers live here (see docs/architecture.md, enforced by import-linter in CI):

- the **kernel** — ``config``, ``db``, ``models``, ``hooks`` and the plugin contracts
  (``channels``, ``pathways``, ``triage``, ``risk``), ``plugins`` (manager + typed facade),
  what both domains share (``delivery``, ``rendering``, ``categories``, ``contacts``,
  ``timestamps``), ``security``, ``telemetry``, ``temporal`` and ``runtime``. It imports
  nothing from the domain folders, the plugins or the surfaces.
- the **surfaces** — ``api`` (FastAPI app factory) and ``cli``: the composition root that
  assembles kernel, domain (``workflows``, ``tickets``) and plugins.
"""
