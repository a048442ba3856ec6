from __future__ import annotations

pytest_plugins = ["suifang.core.testing"]
