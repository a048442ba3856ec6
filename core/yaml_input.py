"""Reading a YAML file someone wrote: its node tree (for line numbers) and its data, safely.

``yaml.safe_load`` lets some bad values escape as plain Python errors — ``2026-02-30``
(a date that does not exist) as ``ValueError``, ``!!timestamp nonsense`` as
``AttributeError``, brackets nested a few hundred deep as ``RecursionError``. Here every
problem becomes a :class:`yaml.YAMLError` carrying the line of the offending value, so a
loader has one error to turn into ``file:line: reason``.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["read_yaml"]


class _Constructor(yaml.SafeLoader):
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            # A library's own wording helps for a bad number or date, not for its internals.
            reason = f": {exc}" if isinstance(exc, ValueError | OverflowError) else ""
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {str(node.value)[:40]!r} as a {kind}{reason}",
                node.start_mark,
            ) from None


def read_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The single document in ``text`` as (node tree, data); raises only ``yaml.YAMLError``."""
    try:
        loader = _Constructor(text)
    except yaml.reader.ReaderError as exc:
        # Raised without a line: only a character offset, and PyYAML's own wording.
        line = text.count("\n", 0, exc.position)
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1)
        raise yaml.MarkedYAMLError(
            problem=f"control character #x{exc.character:04x} is not allowed in YAML",
            problem_mark=yaml.Mark("<text>", exc.position, line, column, None, None),
        ) from None
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except RecursionError:
        raise yaml.MarkedYAMLError(
            problem="nested too deeply to read", problem_mark=loader.get_mark()
        ) from None
    finally:
        loader.dispose()
    return root, data
