"""The built-in LACE risk plugin: worked examples, boundaries, Charlson from ICD-10, groups."""

from __future__ import annotations

import datetime as dt
import types

import pytest

import suifang.workflows.risk
from suifang.core.enums import RiskTier
from suifang.core.errors import ValidationFailed
from suifang.core.hooks import hookimpl
from suifang.core.plugins import Plugins
from suifang.core.risk import RiskAssessment, RiskInput
from suifang.workflows.risk import charlson_index, lace

CST = dt.timezone(dt.timedelta(hours=8))
DISCHARGED = dt.datetime(2026, 5, 10, 10, 0, tzinfo=CST)


def _subject(**fields: object) -> RiskInput:
    return RiskInput.model_validate({"discharged_at": DISCHARGED, **fields})


# --------------------------------------------------------------------------- worked examples


def test_heart_failure_readmitted_through_the_ed_is_high_risk() -> None:
    # L: 2 → 10 May is 8 days → 5.  A: emergency → 3.
    # C: I50.9 heart failure 1 + E11.2 diabetes with complications 2 = index 3 → 3.
    # E: one ED visit → 1.  LACE = 5 + 3 + 3 + 1 = 12 ≥ 10 → high.
    assessment = lace(
        _subject(
            admitted_at=dt.datetime(2026, 5, 2, 16, 30, tzinfo=CST),
            emergency_admission=True,
            diagnosis_codes=["I50.9"],
            comorbidity_codes=["E11.2"],
            ed_visits_6_months=1,
        )
    )
    assert assessment.method == "LACE"
    assert assessment.score == 12
    assert assessment.tier is RiskTier.HIGH
    assert assessment.reasons == [
        "length of stay 8 days: L=5",
        "emergency admission: A=3",
        "Charlson index 3 (congestive heart failure, diabetes with complications): C=3",
        "1 ED visit in the previous 6 months: E=1",
    ]


def test_planned_knee_replacement_without_comorbidity_is_low_risk() -> None:
    # L: 3 days → 3.  A: planned → 0.  C: M17.1 (knee arthrosis) is no Charlson condition → 0.
    # E: 0.  LACE = 3 < 5 → low.
    assessment = lace(_subject(length_of_stay_days=3, diagnosis_codes=["M17.1"]))
    assert assessment.score == 3
    assert assessment.tier is RiskTier.LOW
    assert "not an emergency admission: A=0" in assessment.reasons
    assert "Charlson index 0: C=0" in assessment.reasons


def test_every_part_at_its_maximum_gives_nineteen() -> None:
    # L: 20 days → 7.  A: 3.  C: metastatic lung cancer 6 ≥ 4 → 5.  E: 9 visits, capped → 4.
    # LACE = 7 + 3 + 5 + 4 = 19, the top of the scale.
    assessment = lace(
        _subject(
            length_of_stay_days=20,
            emergency_admission=True,
            diagnosis_codes=["C34.1", "C78.0"],
            ed_visits_6_months=9,
        )
    )
    assert assessment.score == 19
    assert "Charlson index 6 (metastatic solid tumour): C=5" in assessment.reasons
    assert "9 ED visits in the previous 6 months: E=4" in assessment.reasons


# --------------------------------------------------------------------------- length of stay


@pytest.mark.parametrize(
    ("days", "points"),
    [
        (0, 0),
        (0.9, 0),
        (1, 1),
        (2, 2),
        (3, 3),
        (3.9, 3),
        (4, 4),
        (6, 4),
        (7, 5),
        (13, 5),
        (14, 7),
        (60, 7),
    ],
)
def test_length_of_stay_points_at_each_boundary(days: float, points: int) -> None:
    assessment = lace(_subject(length_of_stay_days=days))
    assert assessment.score == points
    assert assessment.reasons[0].endswith(f": L={points}")


def test_length_of_stay_is_counted_in_midnights_from_the_timestamps() -> None:
    # In at 23:00, out at 08:00 next morning: one midnight, one day (L=1).
    overnight = lace(
        _subject(
            admitted_at=dt.datetime(2026, 5, 9, 23, 0, tzinfo=CST),
            discharged_at=dt.datetime(2026, 5, 10, 8, 0, tzinfo=CST),
        )
    )
    assert overnight.reasons[0] == "length of stay 1 day: L=1"
    # Same local day, though the admission was still the day before in UTC: 0 days.
    same_day = lace(
        _subject(
            admitted_at=dt.datetime(2026, 5, 9, 23, 30, tzinfo=dt.UTC),  # 07:30 on 10 May, CST
            discharged_at=dt.datetime(2026, 5, 10, 18, 0, tzinfo=CST),
        )
    )
    assert same_day.reasons[0] == "length of stay 0 days: L=0"


def test_a_given_length_of_stay_wins_over_the_timestamps() -> None:
    assessment = lace(
        _subject(admitted_at=DISCHARGED - dt.timedelta(days=20), length_of_stay_days=2)
    )
    assert assessment.reasons[0] == "length of stay 2 days: L=2"


def test_an_unknown_length_of_stay_scores_zero_and_says_so() -> None:
    assessment = lace(_subject())
    assert assessment.reasons[0] == "length of stay unknown: L=0"
    assert assessment.score == 0


# --------------------------------------------------------------------------- Charlson


@pytest.mark.parametrize(
    ("codes", "index", "conditions"),
    [
        (["I50.9"], 1, ["congestive heart failure"]),
        (["I50.1", "I50.9"], 1, ["congestive heart failure"]),
        (["E11.9"], 1, ["diabetes without complications"]),
        (["E11.2"], 2, ["diabetes with complications"]),
        (["E11.9", "E11.2"], 2, ["diabetes with complications"]),
        (["C34.1"], 2, ["cancer"]),
        (["C34.1", "C78.0"], 6, ["metastatic solid tumour"]),
        (["K70.3"], 1, ["mild liver disease"]),
        (["K70.3", "K72.1"], 3, ["moderate or severe liver disease"]),
        (["K72.9"], 3, ["moderate or severe liver disease"]),
        (
            ["I21.0", "J44.9", "N18.5"],
            4,
            [
                "myocardial infarction",
                "chronic pulmonary disease",
                "renal disease",
            ],
        ),
        (["B20.0", "G81.9"], 8, ["hemiplegia or paraplegia", "AIDS/HIV"]),
        (["J18.9", "I10"], 0, []),
        ([], 0, []),
    ],
)
def test_charlson_index_from_icd10_codes(
    codes: list[str], index: int, conditions: list[str]
) -> None:
    assert charlson_index(codes) == (index, conditions)


def test_charlson_reads_codes_the_way_chinese_records_write_them() -> None:
    # 国家临床版 extensions, lower case, no dot, stray spaces, a dagger, and an ICD-O
    # morphology code that rides along with the cancer diagnosis.
    codes = ["I50.900x001", "e11.200", "I252", " K70.3 ", "A18.3†", "M8140/3"]
    assert charlson_index(codes) == (
        5,
        [
            "myocardial infarction",
            "congestive heart failure",
            "mild liver disease",
            "diabetes with complications",
        ],
    )


def test_a_value_that_is_not_an_icd10_code_is_refused_by_position_only() -> None:
    with pytest.raises(ValidationFailed, match=r"codes\[1\] is not an ICD-10 code") as caught:
        charlson_index(["I50.9", "heart failure"])
    assert "heart failure" not in str(caught.value)

    with pytest.raises(ValidationFailed, match=r"comorbidity_codes\[0\] is not an ICD-10 code"):
        lace(_subject(diagnosis_codes=["I50.9"], comorbidity_codes=["糖尿病"]))


@pytest.mark.parametrize(("index", "points"), [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (7, 5)])
def test_charlson_points(index: int, points: int) -> None:
    assessment = lace(_subject(charlson_index=index))
    assert assessment.score == points


def test_a_charlson_index_from_the_his_overrides_the_codes() -> None:
    # The codes alone would give 6 (metastatic): the HIS says 2, and 2 is what counts.
    assessment = lace(_subject(charlson_index=2, diagnosis_codes=["C34.1", "C78.0"]))
    assert assessment.score == 2
    assert "Charlson index 2 (given by the HIS): C=2" in assessment.reasons


def test_four_comorbidity_points_score_five() -> None:
    # CHF 1 + lung cancer 2 + diabetes 1 = 4 → C=5.
    assessment = lace(_subject(diagnosis_codes=["I50.9"], comorbidity_codes=["C34.9", "E11.9"]))
    assert assessment.score == 5
    assert assessment.reasons[2].endswith("C=5")


# --------------------------------------------------------------------------- tiers


@pytest.mark.parametrize(
    ("fields", "score", "tier"),
    [
        ({"length_of_stay_days": 4}, 4, RiskTier.LOW),  # L4
        ({"length_of_stay_days": 7}, 5, RiskTier.MEDIUM),  # L5
        ({"length_of_stay_days": 7, "ed_visits_6_months": 4}, 9, RiskTier.MEDIUM),  # L5 E4
        (
            {"length_of_stay_days": 7, "emergency_admission": True, "ed_visits_6_months": 2},
            10,
            RiskTier.HIGH,
        ),  # L5 A3 E2
    ],
)
def test_tiers_at_the_cut_offs(fields: dict[str, object], score: int, tier: RiskTier) -> None:
    assessment = lace(_subject(**fields))
    assert (assessment.score, assessment.tier) == (score, tier)


# --------------------------------------------------------------------------- special groups


@pytest.mark.parametrize(
    ("birth_date", "groups"),
    [
        (dt.date(1961, 5, 10), ["elderly"]),  # 65 on the day of discharge
        (dt.date(1961, 5, 11), []),  # 65 tomorrow
        (dt.date(2012, 5, 11), ["child"]),  # 14 tomorrow
        (dt.date(2012, 5, 10), []),  # 14 on the day of discharge
        (None, []),
    ],
)
def test_age_groups_at_discharge(birth_date: dt.date | None, groups: list[str]) -> None:
    assert lace(_subject(birth_date=birth_date)).groups == groups


def test_pregnancy_is_a_group_of_its_own() -> None:
    assessment = lace(_subject(birth_date=dt.date(1994, 1, 1), pregnant=True))
    assert assessment.groups == ["pregnant"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"length_of_stay_days": -1}, "length_of_stay_days must not be negative"),
        ({"ed_visits_6_months": -2}, "ed_visits_6_months must not be negative"),
        ({"charlson_index": -1}, "charlson_index must not be negative"),
        ({"admitted_at": DISCHARGED + dt.timedelta(hours=1)}, "admitted_at is after"),
        ({"admitted_at": dt.datetime(2026, 5, 1, 9, 0)}, "both carry a timezone"),
        ({"birth_date": dt.date(2026, 6, 1)}, "birth_date is after discharged_at"),
    ],
)
def test_bad_input_is_refused_with_the_field_named(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        lace(_subject(**fields))


# --------------------------------------------------------------------------- the hook


def test_the_hook_answers_through_a_real_plugin_manager() -> None:
    plugins = Plugins.load(
        entrypoints=False, builtins=False, extra=[("risk", suifang.workflows.risk)]
    )
    subject = _subject(
        length_of_stay_days=8,
        emergency_admission=True,
        diagnosis_codes=["I50.9"],
        birth_date=dt.date(1950, 1, 1),
    )
    assessment = plugins.assess_risk(subject)
    # L5 + A3 + C1 + E0 = 9.
    assert assessment.method == "LACE"
    assert (assessment.score, assessment.tier) == (9, RiskTier.MEDIUM)
    assert assessment.groups == ["elderly"]
    assert assessment == lace(subject)


def test_a_hospital_model_overrides_lace_even_when_registered_first() -> None:
    def hospital_model(subject: RiskInput) -> RiskAssessment | None:
        if subject.department != "cardiology":
            return None
        return RiskAssessment(tier=RiskTier.HIGH, method="hospital model")

    hospital = types.ModuleType("hospital_risk")
    hospital.suifang_assess_risk = hookimpl(hospital_model)  # type: ignore[attr-defined]
    plugins = Plugins.load(
        entrypoints=False,
        builtins=False,
        extra=[("hospital", hospital), ("risk", suifang.workflows.risk)],
    )
    assert plugins.assess_risk(_subject(department="cardiology")).method == "hospital model"
    # The hospital's model declines other departments: LACE answers.
    assert plugins.assess_risk(_subject(department="orthopaedics")).method == "LACE"
