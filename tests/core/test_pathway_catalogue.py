"""Administrators manage pathways without Python: add a draft, preview it, publish, diff,
retire, export — from the CLI and the API, every change audited."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from suifang.core.api import create_app
from suifang.core.runtime import Runtime
from suifang.core.security.audit import query_audit
from suifang.core.security.auth import Role, create_user, issue_token

DRAFT = Path(__file__).parent / "drafts" / "postpartum.yaml"
Cli = Callable[..., tuple[int, str, str]]


def version_2(tmp_path: Path) -> Path:
    text = DRAFT.read_text("utf-8").replace("version: 1", "version: 2", 1)
    text = text.replace("op: gte, value: 13}", "op: gte, value: 12}")
    path = tmp_path / "postpartum-v2.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_pathway_goes_from_draft_to_published_to_retired_on_the_cli(
    cli: Cli, tmp_path: Path
) -> None:
    code, out, err = cli("pathways", "add", str(DRAFT))
    assert code == 0, err
    assert out.startswith("postpartum-draft@1: draft;")
    # A draft can be previewed, but nobody is enrolled into it yet.
    code, out, err = cli("pathways", "preview", "postpartum-draft@1", "--discharged", "2026-12-01")
    assert code == 0, err
    assert "postpartum-draft v1" in out
    code, out, _ = cli("pathways", "list", "--json")
    assert "postpartum-draft" not in {p["id"] for p in json.loads(out)}

    code, out, err = cli("pathways", "publish", "postpartum-draft", "1")
    assert code == 0, err
    code, out, _ = cli("pathways", "list", "--json")
    listed = {p["id"]: p for p in json.loads(out)}
    assert listed["postpartum-draft"]["source"] == "catalogue (published)"

    # Published versions never change; a new version is a new draft.
    code, _, err = cli("pathways", "add", str(DRAFT))
    assert code != 0
    assert "version 1 is published: published versions never change" in err
    code, _, err = cli("pathways", "add", str(version_2(tmp_path)))
    assert code == 0, err
    code, out, _ = cli("pathways", "diff", "postpartum-draft", "1", "2")
    assert "-version: 1\n+version: 2\n" in out
    assert "op: gte, value: 12}" in out
    assert cli("pathways", "publish", "postpartum-draft", "2")[0] == 0
    assert cli("pathways", "retire", "postpartum-draft", "1")[0] == 0

    code, out, _ = cli("pathways", "versions", "postpartum-draft", "--json")
    assert json.loads(out) == [
        {"version": 1, "status": "retired", "source": "catalogue (retired)"},
        {"version": 2, "status": "published", "source": "catalogue (published)"},
    ]
    code, out, _ = cli("pathways", "export", "postpartum-draft@1")
    assert out == DRAFT.read_text("utf-8")
    exported = tmp_path / "current.yaml"
    assert cli("pathways", "export", "postpartum-draft", "--out", str(exported))[0] == 0
    assert "version: 2" in exported.read_text("utf-8")

    code, out, _ = cli("audit", "--resource", "pathways", "--json")
    trail = [(r["action"], r["detail"]["version"], r["detail"]["to"]) for r in json.loads(out)]
    assert sorted(trail) == sorted(
        [
            ("cli pathways add", 1, "draft"),
            ("cli pathways publish", 1, "published"),
            ("cli pathways add", 2, "draft"),
            ("cli pathways publish", 2, "published"),
            ("cli pathways retire", 1, "retired"),
        ]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "templates/pathways/pci.yaml"), "'pci' version 1 is already registered from"),
        (("publish", "postpartum-draft", "7"), "the catalogue has no pathway 'postpartum-draft'"),
        (("retire", "pci", "1"), "the catalogue has no pathway 'pci' version 1"),
        (("add", "nowhere.yaml"), "nowhere.yaml: cannot read"),
        (("export", "pci@x"), "'pci@x': write a version as id@2"),
        (("migrate", "pci", "--from", "2", "--to", "1"), "--to 1 must be a newer version"),
        (("migrate", "pci", "--from", "1", "--to", "5"), "pathway 'pci' has no version 5"),
    ],
)
def test_bad_catalogue_commands_say_what_is_wrong(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    root = Path(__file__).parents[2]
    args = tuple(str(root / a) if a.endswith(".yaml") and "/" in a else a for a in args)
    code, _, err = cli("pathways", *args)
    assert code != 0
    assert message in err
    assert "Traceback" not in err


def test_a_draft_cannot_be_retired_and_a_retired_one_cannot_be_published(cli: Cli) -> None:
    assert cli("pathways", "add", str(DRAFT))[0] == 0
    code, _, err = cli("pathways", "retire", "postpartum-draft", "1")
    assert code != 0
    assert "is draft: only a published version can be retired" in err
    assert cli("pathways", "publish", "postpartum-draft", "1")[0] == 0
    assert cli("pathways", "retire", "postpartum-draft", "1")[0] == 0
    code, _, err = cli("pathways", "publish", "postpartum-draft", "1")
    assert code != 0
    assert "is retired, not a draft" in err
    code, _, err = cli("pathways", "preview", "postpartum-draft", "--discharged", "2026-12-01")
    assert code != 0
    assert "pathway 'postpartum-draft' has only retired versions" in err


async def test_administrators_manage_the_catalogue_over_the_api(runtime: Runtime) -> None:
    app = create_app(runtime)
    with Session(runtime.engine) as session:
        admin = create_user(session, username="root", display_name="root", role=Role.ADMIN)
        doctor = create_user(
            session, username="dr", display_name="dr", role=Role.DOCTOR, departments=["obstetrics"]
        )
        admin_token = issue_token(session, admin, name="t")[0]
        doctor_token = issue_token(session, doctor, name="t")[0]
    admin_h = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/yaml"}
    doctor_h = {"Authorization": f"Bearer {doctor_token}", "Content-Type": "application/yaml"}
    source = DRAFT.read_text("utf-8")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as client:
        assert (await client.post("/pathways", content=source, headers=doctor_h)).status_code == 403
        as_json = {**admin_h, "Content-Type": "application/json"}
        wrong_type = await client.post("/pathways", content=source.encode(), headers=as_json)
        assert wrong_type.status_code == 415
        assert "Content-Type: application/yaml" in wrong_type.text
        broken = source.replace("value: heavy", "value: hevy")
        refused = await client.post("/pathways", content=broken.encode(), headers=admin_h)
        assert refused.status_code == 422
        line = next(n for n, t in enumerate(broken.splitlines(), 1) if "value: hevy" in t)
        assert f"body:{line}: alert_rules[1].if.value:" in refused.text
        assert "'hevy' is not an option of question 'bleeding'" in refused.text

        added = await client.post("/pathways", content=source.encode(), headers=admin_h)
        assert added.status_code == 201, added.text
        assert added.json() == {
            "pathway_id": "postpartum-draft",
            "version": 1,
            "status": "draft",
            "previous": None,
        }
        published = await client.post(
            "/pathways/postpartum-draft/versions/1/publish", headers=admin_h
        )
        assert published.json()["status"] == "published"
        listed = await client.get("/pathways", headers=admin_h)
        assert "postpartum-draft" in {p["id"] for p in listed.json()}
        text = await client.get("/pathways/postpartum-draft/versions/1/yaml", headers=doctor_h)
        assert text.status_code == 200
        assert text.text == source
        retired = await client.post("/pathways/postpartum-draft/versions/1/retire", headers=admin_h)
        assert (retired.json()["previous"], retired.json()["status"]) == ("published", "retired")
        listed = await client.get("/pathways", headers=admin_h)
        assert "postpartum-draft" not in {p["id"] for p in listed.json()}

    with Session(runtime.engine) as session:
        trail = [
            a.detail
            for a in query_audit(session, resource="pathways", limit=20)
            if a.outcome == "ok" and a.action.startswith("POST")
        ]
    assert sorted(d["to"] for d in trail) == ["draft", "published", "retired"]
