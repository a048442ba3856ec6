"""Pathway templates: validation with file:line errors, variants, versions, match rules."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.pathways import PathwayCatalog, load_template, resolve_plan
from suifang.core.plugins import Plugins

PATHWAYS = Path(__file__).parents[2] / "templates" / "pathways"
BUILT_IN = ["pci", "diabetes", "hip-replacement", "post-checkup", "hypertension", "general"]

MINIMAL = """\
id: demo
version: 1
name: {zh-CN: 演示, en: Demo}
questionnaires:
  check:
    title: {zh-CN: 问卷, en: Check}
    questions:
      - id: pain
        type: scale
        min: 0
        max: 10
        text: {zh-CN: 疼痛评分, en: Pain score}
touchpoints:
  - id: day3
    day: 3
    questionnaire: check
    message: {zh-CN: "{{ name }}您好", en: "Hello {{ name }}"}
alert_rules:
  - id: pain
    if: {question: pain, op: gte, value: 7}
    tier: L2
    summary: {zh-CN: 疼痛, en: Pain}
"""


def write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_minimal_template_loads_with_defaults(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, MINIMAL))
    assert template.answer_wait.total_seconds() == 48 * 3600
    assert template.send_window.start.isoformat() == "08:00:00"
    plan = resolve_plan(template)
    assert plan.touchpoints[0].questionnaire is not None
    assert plan.touchpoints[0].channels == ["wechat", "sms", "voice", "outbox"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    day: 3\n",
            "    day: -3\n",
            "demo.yaml:15: touchpoints[0].day: Input should be greater than or equal to 0",
        ),
        (
            "questionnaire: check\n",
            "questionnaire: missing\n",
            "demo.yaml:16: touchpoints[0].questionnaire: unknown questionnaire 'missing'",
        ),
        ("op: gte", "op: bigger", "demo.yaml:20: alert_rules[0].if"),
        (
            "tier: L2",
            "tier: L4",
            "demo.yaml:21: alert_rules[0].tier: Input should be 'L1', 'L2' or 'L3'",
        ),
        (
            "        min: 0\n        max: 10\n",
            "",
            "questionnaires.check.questions[0]: a scale question needs min and max",
        ),
        ('en: "Hello {{ name }}"', 'en: "Hello {{ name }"', "template syntax error"),
        ("    day: 3\n", "    day: 3\n    every: {every_days: 7}\n", "give exactly one of `day`"),
        ("version: 1", "version: one", "demo.yaml:2: version: Input should be a valid integer"),
    ],
)
def test_invalid_templates_are_refused_with_file_line_field_and_reason(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ValidationFailed) as caught:
        load_template(path)
    message = str(caught.value)
    assert expected.split(":")[0] in message
    assert expected.split(": ", 1)[-1].split(":")[0] in message
    assert "Traceback" not in message


def test_unknown_question_in_an_alert_rule_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("{question: pain,", "{question: pian,"))
    with pytest.raises(ValidationFailed, match="alert rule 'pain': no question 'pian'"):
        load_template(path)


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("touchpoints:\n", "touchpoints:\n  - id: [unclosed\n"))
    with pytest.raises(ValidationFailed, match=r"demo\.yaml:15: not valid YAML"):
        load_template(path)


def test_unknown_fields_are_refused_not_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("    day: 3\n", "    day: 3\n    dya: 4\n"))
    with pytest.raises(
        ValidationFailed, match=r"touchpoints\[0\]\.dya: Extra inputs are not permitted"
    ):
        load_template(path)


def test_unknown_variant_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "variants:\n  vip: {reminders: 3}\n")
    with pytest.raises(ValidationFailed, match="unknown variant 'vip'"):
        load_template(path)


def test_cli_validate_prints_the_problem_and_exits_non_zero(tmp_path: Path) -> None:
    bad = write(tmp_path, MINIMAL.replace("    day: 3\n", "    day: -1\n"), "bad.yaml")
    good = write(tmp_path, MINIMAL, "good.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "suifang.core.cli", "pathways", "validate", str(good), str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert f"{good}: ok — demo v1, 1 touchpoints" in result.stdout
    assert f"{bad}:15: touchpoints[0].day" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("pathway_id", BUILT_IN)
def test_every_built_in_pathway_validates_in_both_languages(pathway_id: str) -> None:
    template = load_template(PATHWAYS / f"{pathway_id}.yaml")
    assert template.id == pathway_id
    for touchpoint in template.touchpoints:
        assert touchpoint.message.zh_cn.strip()
        assert touchpoint.message.en.strip()
    for variant in template.variants:
        plan = resolve_plan(
            template,
            variant if variant in ("low", "medium", "high") else None,
            [variant] if variant not in ("low", "medium", "high") else [],
        )
        assert plan.variants == [variant]


def test_the_catalog_registers_all_built_ins_and_picks_by_match_rules() -> None:
    catalog = Plugins.load(entrypoints=False).pathway_catalog()
    assert set(BUILT_IN) <= set(catalog.ids())
    pick = catalog.match
    assert (
        pick(diagnosis_codes=["I21.4"], procedure_codes=["36.06"], encounter_kind="inpatient").id
        == "pci"
    )
    assert (
        pick(diagnosis_codes=["E11.9"], department="endocrinology", encounter_kind="inpatient").id
        == "diabetes"
    )
    assert (
        pick(diagnosis_codes=["S72.0"], procedure_codes=["81.51"], encounter_kind="inpatient").id
        == "hip-replacement"
    )
    assert pick(department="health_checkup", encounter_kind="checkup").id == "post-checkup"
    assert (
        pick(diagnosis_codes=["I10"], department="cardiology", encounter_kind="inpatient").id
        == "hypertension"
    )
    assert (
        pick(
            diagnosis_codes=["J18.9"], department="general_medicine", encounter_kind="inpatient"
        ).id
        == "general"
    )


def test_versions_are_kept_and_the_newest_is_current(tmp_path: Path) -> None:
    catalog = PathwayCatalog()
    catalog.add_source(write(tmp_path, MINIMAL, "v1.yaml"))
    catalog.add_source(write(tmp_path, MINIMAL.replace("version: 1", "version: 2"), "v2.yaml"))
    assert catalog.versions("demo") == [1, 2]
    assert catalog.get("demo").version == 2
    assert catalog.get("demo", 1).version == 1
    with pytest.raises(ValidationFailed, match="already registered"):
        catalog.add_source(write(tmp_path, MINIMAL, "again.yaml"))
    with pytest.raises(NotFoundError, match="no version 7"):
        catalog.get("demo", 7)
    with pytest.raises(NotFoundError, match="no pathway 'nope'"):
        catalog.get("nope")


def _alert_rules(node: object) -> list[dict[str, object]]:
    """Every alert rule in a template file, variants included."""
    import yaml as _yaml

    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        if "priority" in node and "tier" in node:
            found.append(node)
        for value in node.values():
            found += _alert_rules(value)
    elif isinstance(node, list):
        for value in node:
            found += _alert_rules(value)
    elif isinstance(node, Path):
        found += _alert_rules(_yaml.safe_load(node.read_text(encoding="utf-8")))
    return found


@pytest.mark.parametrize("path", sorted(PATHWAYS.glob("*.yaml")), ids=lambda p: p.stem)
def test_emergency_advice_says_call_120_and_promises_no_call_back(path: Path) -> None:
    """The patient's first words in an emergency: what to do now. Whether a doctor was
    reached is told only once a page is accepted (templates/messages/ticket_doctor_notified)."""
    for rule in _alert_rules(path):
        if rule["priority"] != "emergency":
            continue
        advice = rule.get("advice")
        assert isinstance(advice, dict), f"{path.name}: {rule['id']} has no advice"
        for locale, text in advice.items():
            assert "120" in text, f"{path.name}: {rule['id']} ({locale}) does not say call 120"
            for promise in ("会尽快联系", "已通知", "will contact you", "has been notified"):
                assert promise not in text, f"{path.name}: {rule['id']} ({locale}) promises a call"
