"""`suifang pathways validate` catches every rule that could never fire and every name that
refers to nothing, one clear line each; `pathways preview` shows a draft's messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from suifang.core.categories import CATEGORY_IDS
from suifang.core.pathway_checks import MESSAGE_VARIABLES, load_indicators
from suifang.core.pathways import AlertRule, read_template
from suifang.workflows.journey_rules import compile_condition, evaluate, score_of

DRAFT = Path(__file__).parent / "drafts" / "postpartum.yaml"
Cli = Callable[..., tuple[int, str, str]]


def draft(tmp_path: Path, *changes: tuple[str, str]) -> Path:
    text = DRAFT.read_text("utf-8")
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "draft.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(path: Path, fragment: str) -> int:
    return next(
        n for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if fragment in line
    )


def test_the_draft_is_valid(cli: Cli) -> None:
    code, out, err = cli("pathways", "validate", str(DRAFT))
    assert code == 0, err
    assert "ok — postpartum-draft v1, 5 touchpoints" in out
    assert "warning" not in out


MISTAKES = [
    pytest.param(
        ("value: heavy", "value: hevy"),
        "value: hevy",
        "alert_rules[1].if.value: alert rule 'heavy_bleeding': 'hevy' is not an option of "
        "question 'bleeding' (options: light, heavy)",
        id="option",
    ),
    pytest.param(
        ("indicator: temperature", "indicator: temprature"),
        "indicator: temprature",
        "questionnaires.recovery.questions[0].indicator: unknown indicator 'temprature' "
        "(did you mean 'temperature'?)",
        id="indicator",
    ),
    pytest.param(
        ("value: 38.0", "value: 380"),
        "value: 380",
        "alert_rules[0].if.value: alert rule 'fever': 380 is outside the range of question "
        "'temperature' (34–43): the rule can never fire",
        id="threshold",
    ),
    pytest.param(
        ("channels: [wechat, sms]", "channels: [weixin, sms]"),
        "weixin",
        "channels[0]: unknown channel 'weixin'",
        id="channel",
    ),
    pytest.param(
        ("Hello {{ name }}, day", "Hello {{ patient_name }}, day"),
        "patient_name",
        "touchpoints[0].message.en: unknown variable {{ patient_name }}: the message would "
        "fail when sent (variables: day, department, finding, hospital, name, points)",
        id="variable",
    ),
    pytest.param(
        ("department: obstetrics", "department: obstetrics\nmatch: {tags: [bp_uncontroled]}"),
        "bp_uncontroled",
        "match.tags[0]: unknown tag 'bp_uncontroled' (templates/tags.yaml) "
        "(did you mean 'bp_uncontrolled'?)",
        id="match-tag",
    ),
    pytest.param(
        ("variants:\n  high:", "variants:\n  tag:eldery: {reminders: 2}\n  high:"),
        "tag:eldery",
        "variants['tag:eldery']: unknown tag 'eldery' (templates/tags.yaml) "
        "(did you mean 'elderly'?)",
        id="variant-tag",
    ),
    pytest.param(
        ("department: obstetrics", "department: obstetric"),
        "department: obstetric",
        "department: unknown department 'obstetric' (did you mean 'obstetrics'?)",
        id="department",
    ),
    pytest.param(
        (
            "    summary: {zh-CN: 喂养困难",
            "    category: breastfeding\n    summary: {zh-CN: 喂养困难",
        ),
        "category: breastfeding",
        "alert_rules[2].category: alert rule 'feeding': unknown category 'breastfeding'",
        id="category",
    ),
    pytest.param(
        (
            "{question: temperature, op: gte, value: 38.0}",
            "{indicator: temprature, op: gte, value: 38}",
        ),
        "temprature",
        "alert_rules[0].if.indicator: alert rule 'fever': unknown indicator 'temprature'",
        id="rule-indicator",
    ),
    pytest.param(
        (
            "{question: temperature, op: gte, value: 38.0}",
            "{indicator: temperature, op: gte, value: 100.4}",
        ),
        "100.4",
        "alert_rules[0].if.value: alert rule 'fever': 100.4 is outside the range of indicator "
        "'temperature' (30–45): the rule can never fire",
        id="rule-unit",
    ),
    pytest.param(
        (
            "{question: bleeding, op: eq, value: heavy}",
            "{question: bleeding, op: gte, value: heavy}",
        ),
        "op: gte, value: heavy",
        "alert_rules[1].if.op: alert rule 'heavy_bleeding': gte cannot compare the options of "
        "'bleeding' (use eq, ne or in)",
        id="ordering-on-options",
    ),
    pytest.param(
        ("{question: breastfeeding_ok, value: no}", '{question: breastfeeding_ok, value: "nope"}'),
        "nope",
        "alert_rules[2].if.value: alert rule 'feeding': 'nope' is not an answer to yes/no "
        'question \'breastfeeding_ok\' (use "yes" or "no")',
        id="yes-no",
    ),
    pytest.param(
        ("op: gte, value: 13}", "op: gte, value: 40}"),
        "value: 40}",
        "alert_rules[3].if.value: alert rule 'epds_high': 40 is outside the range of sum "
        "'the score' (0–30): the rule can never fire",
        id="score-threshold",
    ),
    pytest.param(
        ("reverse: [e1, e2]}", "reverse: [e1, e2, e11]}"),
        "e11",
        "alert_rules[3].if.score: reverse items ['e11'] are not in sum",
        id="score-reverse",
    ),
    pytest.param(
        ("  - id: feeding\n", "  - id: feeding\n    department: obstetrcs\n"),
        "department: obstetrcs",
        "alert_rules[2].department: alert rule 'feeding': unknown department 'obstetrcs' "
        "(did you mean 'obstetrics'?)",
        id="rule-department",
    ),
    pytest.param(
        ("  - id: feeding\n", "  - id: feeding\n    touchpoints: [d7-missing]\n"),
        "d7-missing",
        "alert rule 'feeding': no touchpoint 'd7-missing'",
        id="rule-touchpoint",
    ),
]


@pytest.mark.parametrize(("change", "where", "expected"), MISTAKES)
def test_each_silent_mistake_is_one_clear_line(
    cli: Cli, tmp_path: Path, change: tuple[str, str], where: str, expected: str
) -> None:
    path = draft(tmp_path, change)
    code, _, err = cli("pathways", "validate", str(path))
    assert code != 0
    problems = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    assert len(problems) == 1, err
    assert problems[0].startswith(f"{path}:{line_of(path, where)}: "), problems[0]
    assert expected in problems[0]
    assert "Traceback" not in err


def test_a_wrong_type_in_a_condition_is_one_line_not_a_union_dump(cli: Cli, tmp_path: Path) -> None:
    path = draft(
        tmp_path,
        (
            "{question: temperature, op: gte, value: 38.0}",
            '{indicator: temperature, op: gte, value: "38度"}',
        ),
    )
    code, _, err = cli("pathways", "validate", str(path))
    assert code != 0
    problems = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    assert problems == [
        f"{path}:{line_of(path, '38度')}: alert_rules[0].if.value: Input should be a valid "
        "number, unable to parse string as a number"
    ]


def test_a_condition_of_no_known_kind_says_which_kinds_there_are(cli: Cli, tmp_path: Path) -> None:
    path = draft(tmp_path, ("{question: breastfeeding_ok, value: no}", "{questoin: x}"))
    code, _, err = cli("pathways", "validate", str(path))
    assert code != 0
    assert "alert_rules[2].if: a condition needs one of `question:`" in err


def test_a_rule_on_a_question_no_touchpoint_asks_can_never_fire(cli: Cli, tmp_path: Path) -> None:
    spare = (
        "  spare:\n    title: {zh-CN: 备用, en: Spare}\n    questions:\n"
        "      - {id: dizzy, type: yes_no, text: {zh-CN: 头晕吗, en: Dizzy}}\n"
    )
    rule = (
        "  - id: dizzy\n    if: {question: dizzy, value: yes}\n    tier: L2\n"
        "    summary: {zh-CN: 头晕, en: Dizzy}\n"
    )
    path = draft(
        tmp_path,
        ("touchpoints:\n", spare + "touchpoints:\n"),
        ("alert_rules:\n", "alert_rules:\n" + rule),
    )
    code, out, err = cli("pathways", "validate", str(path))
    assert code != 0
    assert (
        f"{path}:{line_of(path, 'question: dizzy')}: alert_rules[0].if: alert rule 'dizzy' can "
        "never fire: question 'dizzy' is in no questionnaire a touchpoint sends"
    ) in err
    assert (
        f"{path}:{line_of(path, '  spare:')}: questionnaires.spare: warning: questionnaire "
        "'spare' is never sent"
    ) in out


def test_an_emergency_rule_without_advice_is_a_warning_not_an_error(
    cli: Cli, tmp_path: Path
) -> None:
    path = draft(tmp_path, ("    advice: {zh-CN: 请立即拨打120, en: Call 120 now}\n", ""))
    code, out, err = cli("pathways", "validate", str(path))
    assert code == 0, err
    assert (
        f"{path}:{line_of(path, 'id: heavy_bleeding')}: alert_rules[1].advice: warning: "
        "alert rule 'heavy_bleeding' is an emergency but tells the patient nothing "
        "(add advice: what to do now, e.g. call 120)"
    ) in out
    assert "ok — postpartum-draft" in out


def test_findings_as_json(cli: Cli, tmp_path: Path) -> None:
    path = draft(tmp_path, ("value: heavy", "value: hevy"))
    code, out, _ = cli("pathways", "validate", "--json", str(path), str(DRAFT))
    assert code != 0
    report = json.loads(out)
    assert [r["ok"] for r in report] == [False, True]
    assert "'hevy' is not an option" in report[0]["errors"][0]


def test_every_built_in_pathway_is_clean(cli: Cli) -> None:
    files = sorted((Path(__file__).parents[2] / "templates" / "pathways").glob("*.yaml"))
    code, out, err = cli("pathways", "validate", *map(str, files))
    assert code == 0, err
    assert out.count(": ok — ") == len(files)
    assert "warning" not in out


def test_a_hospital_adds_its_own_indicators(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = draft(tmp_path, ("indicator: temperature", "indicator: ear_temperature"))
    extra = tmp_path / "indicators.yaml"
    extra.write_text(
        "version: 1\nindicators:\n  ear_temperature: {name: {zh-CN: 耳温, en: Ear temperature},"
        " unit: °C, min: 30, max: 45}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("SUIFANG_INDICATORS_FILE", str(extra))
    code, _out, err = cli("pathways", "validate", str(path))
    assert code == 0, err

    extra.write_text("version: 1\nindicators:\n  x: {name: {zh-CN: 叉, en: X}, min: 5, max: 1}\n")
    code, _, err = cli("pathways", "validate", str(path))
    assert code != 0
    assert f"{extra}: indicators.x: min must be below max" in err


def test_an_unquoted_yes_in_a_rule_matches_a_yes_answer() -> None:
    # YAML reads `value: yes` as a boolean; the answer to a yes/no question is the word.
    rule = AlertRule.model_validate(
        {
            "id": "r",
            "if": {"question": "fever", "value": True},
            "tier": "L2",
            "summary": {"zh-CN": "发热", "en": "Fever"},
        }
    )
    assert evaluate(rule.condition, {"fever": "yes"}, {})
    assert not evaluate(rule.condition, {"fever": "no"}, {})


def test_preview_renders_a_drafts_messages_in_the_chosen_language(cli: Cli) -> None:
    code, out, err = cli(
        "pathways", "preview", str(DRAFT), "--discharged", "2026-12-01", "--locale", "en"
    )
    assert code == 0, err
    assert "postpartum-draft v1 (standard), discharged 2026-12-01" in out
    assert "2026-12-02 10:00  day 1  d1  (wechat → sms)" in out
    assert "Hello Mrs Wang, day 1 after birth" in out
    assert "Your temperature today? (34–43 °C)" in out

    code, out, _ = cli("pathways", "preview", str(DRAFT), "--discharged", "2026-12-01", "--json")
    assert code == 0
    first = json.loads(out)["schedule"][0]
    assert first["message"].startswith("王阿姨您好，")
    assert "产后第1天随访" in first["message"]
    assert first["channels"] == ["wechat", "sms"]


def test_preview_refuses_an_unknown_group_and_names_the_known_ones(cli: Cli) -> None:
    code, _, err = cli(
        "pathways", "preview", "pci", "--discharged", "2026-12-01", "--group", "kids"
    )
    assert code != 0
    assert "unknown group 'kids': groups are elderly, child, pregnant" in err


def test_preview_of_a_pinned_version_and_of_a_broken_draft(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("pathways", "preview", "pci@1", "--discharged", "2026-12-01")
    assert code == 0, err
    assert out.startswith("pci v1 (standard)")

    code, _, err = cli("pathways", "preview", "pci@one", "--discharged", "2026-12-01")
    assert code != 0
    assert "write a version as id@2" in err

    broken = draft(tmp_path, ("value: heavy", "value: hevy"))
    code, _, err = cli("pathways", "preview", str(broken), "--discharged", "2026-12-01")
    assert code != 0
    assert "'hevy' is not an option of question 'bleeding'" in err


def test_the_authoring_reference_names_every_indicator_variable_and_category() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "pathways.md").read_text("utf-8")
    for name in [*load_indicators(), *MESSAGE_VARIABLES, *CATEGORY_IDS]:
        assert f"`{name}`" in doc, name
    example = doc.split("## A complete example", 1)[1].split("```yaml\n", 1)[1].split("```")[0]
    draft_body = "".join(
        line for line in DRAFT.read_text("utf-8").splitlines(keepends=True) if line[0] != "#"
    )
    assert example == draft_body


def test_a_hospitals_pathway_directory_is_loaded_at_start(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "pathways"
    directory.mkdir()
    (directory / "postpartum.yaml").write_text(DRAFT.read_text("utf-8"), encoding="utf-8")
    monkeypatch.setenv("SUIFANG_PATHWAYS_DIR", str(directory))
    code, out, err = cli("pathways", "list", "--json")
    assert code == 0, err
    listed = {p["id"]: p["source"] for p in json.loads(out)}
    assert listed["postpartum-draft"] == str(directory / "postpartum.yaml")
    assert "pci" in listed


def test_a_broken_file_in_the_pathway_directory_stops_the_start_with_its_line(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "pathways"
    directory.mkdir()
    broken = draft(tmp_path, ("value: heavy", "value: hevy"))
    (directory / "postpartum.yaml").write_text(broken.read_text("utf-8"), encoding="utf-8")
    monkeypatch.setenv("SUIFANG_PATHWAYS_DIR", str(directory))
    code, _, err = cli("pathways", "list")
    assert code != 0
    assert f"{directory / 'postpartum.yaml'}:{line_of(broken, 'value: hevy')}: " in err
    assert "'hevy' is not an option of question 'bleeding'" in err


def test_a_missing_pathway_directory_is_named(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUIFANG_PATHWAYS_DIR", str(tmp_path / "nowhere"))
    code, _, err = cli("pathways", "list")
    assert code != 0
    assert f"SUIFANG_PATHWAYS_DIR: {tmp_path / 'nowhere'} is not a directory" in err


def test_a_composite_score_sums_points_reverses_items_and_needs_every_answer() -> None:
    template = read_template(DRAFT)[0]
    questions = {q.id: q for q in template.questionnaires["epds"].questions}
    rule = next(r for r in template.alert_rules if r.id == "epds_high")
    predicate = compile_condition(rule.condition, questions)
    # Items 1 and 2 are reverse-scored: "never able to laugh" counts 3.
    low_mood = {"e1": "never", "e2": "never", **{f"e{i}": "rarely" for i in range(3, 11)}}
    assert score_of(rule.condition.score, low_mood, questions) == 3 + 3 + 8  # type: ignore[union-attr]
    assert predicate(low_mood, {})
    assert evaluate(rule.condition, low_mood, {}, questions)
    well = {"e1": "often", "e2": "often", **{f"e{i}": "rarely" for i in range(3, 11)}}
    assert not predicate(well, {})  # 0 + 0 + 8
    half = {k: v for k, v in low_mood.items() if k != "e10"}
    assert not predicate(half, {})  # a score of half a questionnaire is no score


def test_a_score_over_an_item_that_counts_nothing_is_refused(cli: Cli, tmp_path: Path) -> None:
    # e4 becomes a free-text question: it has no points to add up.
    original = next(
        line for line in DRAFT.read_text("utf-8").splitlines() if "{id: e4, type: choice" in line
    )
    text_question = original.replace("type: choice", "type: text").replace(
        ", options: *often}", "}"
    )
    path = draft(tmp_path, (original, text_question))
    code, _, err = cli("pathways", "validate", str(path))
    assert code != 0
    assert (
        "alert_rules[3].if.score.sum[3]: alert rule 'epds_high': question 'e4' counts no points "
        "in a score"
    ) in err


def test_a_risk_fact_naming_two_things_is_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    path = draft(tmp_path, ("{age_gte: 35}", "{age_gte: 35, sex: female}"))
    code, _, err = cli("pathways", "validate", str(path))
    assert code != 0
    problems = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    assert len(problems) == 1, err
    assert problems[0].startswith(f"{path}:{line_of(path, 'age_gte')}: risk.high.any[1]: ")
    assert "a fact names exactly one of age_gte, age_lt" in problems[0]
    assert "got ['age_gte', 'sex']" in problems[0]
