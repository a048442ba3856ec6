"""The triage measured on patient messages it was never tuned on (tests/tickets/corpus).

``heldout.csv`` was written blind, from a plain brief, by writers who never saw the lexicon,
the cue lists, the category model or the knowledge base; nothing is tuned on it. This test
prints the per-class recall and precision on every run and fails when the triage falls
below the floors below. Issue 18's targets are higher than what is reached today on this
file (see docs/triage.md); they are checked too, as an expected failure that turns into a
failure of its own the day they are met, so the floors get raised.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from suifang.tickets.evaluation import Evaluation, evaluate, load_corpus
from suifang.tickets.triage import classify

CORPUS = Path(__file__).parent / "corpus"
TEMPLATES = Path(__file__).parents[2] / "templates"

# What the triage reaches on heldout.csv today (2026-12-05, after sets 23a and 23b: emergency
# recall 98.7 %, no clinical message answered at L1, feedback routed 90.7 %, routine 78.0 %), less
# a little room: a change that loses ground fails CI.
FLOORS = {
    "emergency_recall": 0.985,
    "clinical_answered_automatically": 0,
    "feedback_routed": 0.90,
    "routine_answered": 0.77,
}
# Issue 18's bar.
TARGETS = {
    "emergency_recall": 1.0,
    "clinical_answered_automatically": 0,
    "feedback_routed": 0.95,
    "routine_answered": 0.70,
}


@functools.cache
def held_out() -> Evaluation:
    table = yaml.safe_load((TEMPLATES / "routing.yaml").read_text(encoding="utf-8"))
    departments = {
        entry["code"]
        for entry in yaml.safe_load((TEMPLATES / "departments.yaml").read_text(encoding="utf-8"))
    }
    rows = load_corpus(CORPUS / "heldout.csv")
    return evaluate(rows, classify, routing_table=table, departments=departments)


def figures(evaluation: Evaluation) -> dict[str, float]:
    return {
        "emergency_recall": evaluation.emergency_recall,
        "clinical_answered_automatically": len(evaluation.clinical_answered_automatically),
        "feedback_routed": evaluation.feedback_routed,
        "routine_answered": evaluation.routine_answered,
    }


def shortfalls(found: dict[str, float], bar: dict[str, float]) -> list[str]:
    problems = []
    for name, wanted in bar.items():
        if name == "clinical_answered_automatically":
            if found[name] > wanted:
                problems.append(f"{name}: {found[name]:g} (at most {wanted:g})")
        elif found[name] < wanted:
            problems.append(f"{name}: {found[name]:.1%} (at least {wanted:.0%})")
    return problems


def test_the_held_out_corpus_is_what_the_brief_asked_for() -> None:
    evaluation = held_out()
    counts = {label: n for label, (n, _, _) in evaluation.per_class().items()}
    assert counts["emergency"] >= 250
    assert counts["clinical"] >= 150
    assert counts["routine"] >= 100
    assert counts["complaint"] + counts["suggestion"] + counts["praise"] >= 100
    by_concept = evaluation.emergency_recall_by_concept()
    assert len(by_concept) == 18, sorted(by_concept)


def test_triage_on_the_held_out_corpus_stays_above_its_floors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    evaluation = held_out()
    with capsys.disabled():  # the figures are shown on every run, passing or not
        print("\ntriage on tests/tickets/corpus/heldout.csv")
        for line in evaluation.report().splitlines():
            print("  " + line)
    problems = shortfalls(figures(evaluation), FLOORS)
    assert not problems, "\n".join(problems) + "\n\n" + evaluation.report()


@pytest.mark.xfail(strict=True, reason="issue 18 is open: see docs/triage.md for the figures")
def test_triage_on_the_held_out_corpus_meets_issue_18s_targets() -> None:
    assert not shortfalls(figures(held_out()), TARGETS)
