"""The pathway catalogue administrators manage without Python: draft, publish, retire.

A pathway's YAML is imported as a **draft** (``suifang pathways add FILE``, ``POST
/pathways``), checked as ``suifang pathways validate`` checks it; a draft may be replaced
by importing the same id and version again. **Publishing** makes it immutable and open for
enrollment (the newest published version is the one new discharges get); **retiring** closes
it to new enrollments, while running journeys keep the plan they started with. Every change
is audited by the surface that made it (who, when, from which status to which).

Versions from the built-in templates, plugins and ``SUIFANG_PATHWAYS_DIR`` are published by
being there; the catalogue refuses a draft with the id and version of one of them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import Engine, func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from suifang.core.db import utcnow
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import PathwayVersion
from suifang.core.pathway_checks import Vocabulary, check_template
from suifang.core.pathways import PathwayCatalog, PathwayTemplate, locate, parse_template

__all__ = [
    "CatalogueChange",
    "add_draft",
    "add_published",
    "catalogue_stamp",
    "diff",
    "export",
    "find_version",
    "publish",
    "retire",
]

MAX_SOURCE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class CatalogueChange:
    pathway_id: str
    version: int
    status: str
    previous: str | None
    """The status before (None: new)."""

    def audit_detail(self) -> dict[str, str | int | None]:
        return {
            "pathway": self.pathway_id,
            "version": self.version,
            "from": self.previous,
            "to": self.status,
        }


def _checked(source: str, origin: str, vocabulary: Vocabulary) -> PathwayTemplate:
    if len(source.encode("utf-8")) > MAX_SOURCE_BYTES:
        raise ValidationFailed(f"{origin}: larger than {MAX_SOURCE_BYTES // 1024} KiB")
    template, root = parse_template(source, origin)
    errors = [
        locate(origin, root, f.loc, f.text())
        for f in check_template(template, vocabulary)
        if not f.warning
    ]
    if errors:
        raise ValidationFailed("invalid pathway template\n  " + "\n  ".join(errors))
    return template


def add_draft(
    session: Session,
    source: str,
    *,
    origin: str,
    actor: str,
    vocabulary: Vocabulary,
    registered: PathwayCatalog,
) -> CatalogueChange:
    """Import YAML as a draft (replacing a draft of the same id and version)."""
    template = _checked(source, origin, vocabulary)
    if template.key in _file_keys(registered, session):
        raise ValidationFailed(
            f"{origin}: pathway {template.id!r} version {template.version} is already "
            f"registered from {registered.origin(registered.get(*template.key))}: "
            "bump `version` for a new one"
        )
    row = _row(session, template.id, template.version)
    if row is not None and row.status != "draft":
        raise ValidationFailed(
            f"{origin}: pathway {template.id!r} version {template.version} is {row.status}: "
            "published versions never change — bump `version` for a new one"
        )
    previous = row.status if row is not None else None
    now = utcnow()
    row = row or PathwayVersion(
        pathway_id=template.id,
        version=template.version,
        status="draft",
        source=source,
        created_by=actor,
    )
    row.source, row.created_by, row.changed_at = source, actor, now
    session.add(row)
    session.commit()
    return CatalogueChange(template.id, template.version, "draft", previous)


def publish(
    session: Session, pathway_id: str, version: int, *, vocabulary: Vocabulary
) -> CatalogueChange:
    """Open a draft for enrollment; it is checked again (a department may have gone)."""
    row = _existing(session, pathway_id, version)
    if row.status != "draft":
        raise ValidationFailed(
            f"pathway {pathway_id!r} version {version} is {row.status}, not a draft"
        )
    _checked(row.source, f"{pathway_id}@{version}", vocabulary)
    row.status, row.published_at, row.changed_at = "published", utcnow(), utcnow()
    session.add(row)
    session.commit()
    return CatalogueChange(pathway_id, version, "published", "draft")


def retire(session: Session, pathway_id: str, version: int) -> CatalogueChange:
    """Close a published version to new enrollments; running journeys are unaffected."""
    row = _existing(session, pathway_id, version)
    if row.status != "published":
        raise ValidationFailed(
            f"pathway {pathway_id!r} version {version} is {row.status}: only a published "
            "version can be retired"
        )
    row.status, row.retired_at, row.changed_at = "retired", utcnow(), utcnow()
    session.add(row)
    session.commit()
    return CatalogueChange(pathway_id, version, "retired", "published")


def add_published(catalog: PathwayCatalog, session: Session) -> None:
    """Add the catalogue's published (and retired) versions to ``catalog``."""
    rows = session.exec(
        select(PathwayVersion)
        .where(PathwayVersion.status != "draft")
        .order_by(PathwayVersion.pathway_id, PathwayVersion.version)
    ).all()
    for row in rows:
        origin = f"catalogue ({row.status})"
        template, _ = parse_template(row.source, f"{row.pathway_id}@{row.version}")
        catalog.add(template, origin, retired=row.status == "retired")


def catalogue_stamp(engine: Engine) -> tuple[int, object] | None:
    """What changes whenever the catalogue does (None: no catalogue table yet)."""
    try:
        with Session(engine) as session:
            count, latest = session.exec(
                select(func.count(PathwayVersion.id), func.max(PathwayVersion.changed_at))  # type: ignore[arg-type]
            ).one()
    except SQLAlchemyError:
        return None
    return count, latest


def export(
    session: Session, registered: PathwayCatalog, pathway_id: str, version: int | None
) -> str:
    """The YAML of a version: as imported (a draft included), or its file, or — for a
    plugin's object — the template written out."""
    if version is not None:
        row = _row(session, pathway_id, version)
        if row is not None:
            return row.source
    template = registered.get(pathway_id, version)
    origin = registered.origin(template)
    if origin and Path(origin).is_file():
        return Path(origin).read_text(encoding="utf-8")
    row = _row(session, template.id, template.version)
    if row is not None:
        return row.source
    data = template.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def diff(session: Session, registered: PathwayCatalog, pathway_id: str, old: int, new: int) -> str:
    """A unified diff of two versions' YAML."""
    before = export(session, registered, pathway_id, old).splitlines(keepends=True)
    after = export(session, registered, pathway_id, new).splitlines(keepends=True)
    lines = difflib.unified_diff(before, after, f"{pathway_id}@{old}", f"{pathway_id}@{new}")
    return "".join(lines)


def find_version(session: Session, pathway_id: str, version: int) -> PathwayVersion | None:
    """The catalogue's row for a version (a draft included), if it has one."""
    return _row(session, pathway_id, version)


def _row(session: Session, pathway_id: str, version: int) -> PathwayVersion | None:
    return session.exec(
        select(PathwayVersion).where(
            PathwayVersion.pathway_id == pathway_id, PathwayVersion.version == version
        )
    ).first()


def _existing(session: Session, pathway_id: str, version: int) -> PathwayVersion:
    row = _row(session, pathway_id, version)
    if row is None:
        raise NotFoundError(f"the catalogue has no pathway {pathway_id!r} version {version}")
    return row


def _file_keys(registered: PathwayCatalog, session: Session) -> set[tuple[str, int]]:
    """The versions registered from files and plugins (not from the catalogue itself)."""
    catalogue = {(r.pathway_id, r.version) for r in session.exec(select(PathwayVersion)).all()}
    return registered.keys() - catalogue
