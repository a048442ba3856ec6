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

__all__ = ["line_of", "read_yaml"]


class _Constructor(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML keeps the last of two equal keys without a word: a pasted block that repeats
        # a key would silently replace the first.
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or key == "<<":
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} is given twice (first on line {seen[key].line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)

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


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line where the entry at pydantic location ``loc`` (or its deepest existing
    parent) is written in the tree :func:`read_yaml` returned: a mapping entry's key, a list
    item's first line. Parts of ``loc`` that are not keys of the file (pydantic's own markers,
    union members) are passed over."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
    return line
