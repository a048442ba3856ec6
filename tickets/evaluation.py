"""Measuring the triage on labelled patient messages: per-class recall and precision, safety.

A corpus is a CSV with the columns
``text,language,class,concept,department,kb_topic,pathway,discharge_department,note``:

- ``class``: ``emergency``, ``clinical``, ``routine``, ``complaint``, ``suggestion`` or
  ``praise`` — what the hospital must do with the message;
- ``concept``: which danger (emergencies) or which clinical matter;
- ``department``: who must receive a complaint, suggestion or thanks;
- ``kb_topic``: the knowledge-base entry that answers a routine question, or ``none``.

:func:`evaluate` runs every message through the real triage (the same plugins a worker
uses) and routing decision, and reports what ``suifang triage evaluate`` and the CI test
print: emergency recall, clinical messages answered automatically (must be none),
complaints reaching their department, routine questions answered correctly.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.errors import ValidationFailed
from suifang.core.triage import RoutingRequest, TriageRequest, TriageResult
from suifang.tickets.routing import choose_department

__all__ = ["CLASSES", "CorpusRow", "Evaluation", "evaluate", "load_corpus"]

CLASSES = ("emergency", "clinical", "routine", "complaint", "suggestion", "praise")
HEADER = [
    "text",
    "language",
    "class",
    "concept",
    "department",
    "kb_topic",
    "pathway",
    "discharge_department",
    "note",
]
_FEEDBACK = ("complaint", "suggestion", "praise")


@dataclass(frozen=True, slots=True)
class CorpusRow:
    line: int
    text: str
    language: str
    label: str
    concept: str
    department: str
    kb_topic: str
    pathway: str
    discharge_department: str
    note: str


def load_corpus(path: Path) -> list[CorpusRow]:
    """Rows of a corpus file; a bad row is refused with its line and column."""
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    reader = csv.DictReader(io.StringIO(content))
    if reader.fieldnames != HEADER:
        raise ValidationFailed(f"{path}:1: the header must be {','.join(HEADER)}")
    rows = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row or any(value is None for value in row.values()):
            raise ValidationFailed(f"{where}: expected {len(HEADER)} columns")
        if row["class"] not in CLASSES:
            raise ValidationFailed(
                f"{where}: class {row['class']!r} is not one of {', '.join(CLASSES)}"
            )
        if not row["text"].strip():
            raise ValidationFailed(f"{where}: text is empty")
        if row["class"] in _FEEDBACK and not row["department"]:
            raise ValidationFailed(f"{where}: a {row['class']} needs its department")
        if row["class"] == "routine" and not row["kb_topic"]:
            raise ValidationFailed(f"{where}: a routine question needs kb_topic (an entry or none)")
        rows.append(
            CorpusRow(
                reader.line_num,
                row["text"],
                row["language"],
                row["class"],
                row["concept"],
                row["department"],
                row["kb_topic"],
                row["pathway"],
                row["discharge_department"],
                row["note"],
            )
        )
    return rows


@dataclass
class Outcome:
    row: CorpusRow
    result: TriageResult
    department: str | None
    """Who the message reaches: the routed department, or the one thanked for praise."""

    @property
    def predicted(self) -> str:
        """The class the triage gave the message, in the corpus's terms."""
        result = self.result
        if result.urgency is Priority.EMERGENCY:
            return "emergency"
        if result.intent in ("praise", "complaint", "suggestion"):
            return result.intent
        if result.intent == "report" or result.urgency is Priority.URGENT:
            return "clinical"
        return "routine"

    @property
    def answered_automatically(self) -> bool:
        return self.result.suggested_tier is Tier.L1


@dataclass
class Evaluation:
    outcomes: list[Outcome] = field(default_factory=list)

    def _of(self, label: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.row.label == label]

    @property
    def emergency_recall(self) -> float:
        emergencies = self._of("emergency")
        hits = sum(o.result.urgency is Priority.EMERGENCY for o in emergencies)
        return hits / len(emergencies) if emergencies else 1.0

    @property
    def missed_emergencies(self) -> list[Outcome]:
        return [o for o in self._of("emergency") if o.result.urgency is not Priority.EMERGENCY]

    @property
    def false_emergencies(self) -> list[Outcome]:
        return [
            o
            for o in self.outcomes
            if o.row.label != "emergency" and o.result.urgency is Priority.EMERGENCY
        ]

    @property
    def clinical_answered_automatically(self) -> list[Outcome]:
        """Clinical messages (and emergencies) the L1 tier answered or thanked on its own."""
        return [
            o
            for o in self.outcomes
            if o.row.label in ("clinical", "emergency") and o.answered_automatically
        ]

    @property
    def feedback_routed(self) -> float:
        feedback = [o for o in self.outcomes if o.row.label in _FEEDBACK]
        right = sum(o.department == o.row.department for o in feedback)
        return right / len(feedback) if feedback else 1.0

    @property
    def misrouted_feedback(self) -> list[Outcome]:
        return [
            o
            for o in self.outcomes
            if o.row.label in _FEEDBACK and o.department != o.row.department
        ]

    @property
    def routine_answered(self) -> float:
        """Routine questions answered correctly: the labelled entry, or no answer for none."""
        routine = self._of("routine")
        right = sum(_answered_right(o) for o in routine)
        return right / len(routine) if routine else 1.0

    @property
    def wrong_answers(self) -> list[Outcome]:
        return [
            o
            for o in self.outcomes
            if o.result.knowledge_answer is not None
            and o.answered_automatically
            and not (o.row.label == "routine" and o.row.kb_topic == o.result.knowledge_answer.id)
        ]

    def per_class(self) -> dict[str, tuple[int, float, float]]:
        """class → (messages, recall, precision) of the predicted class."""
        table = {}
        for label in CLASSES:
            actual = self._of(label)
            predicted = [o for o in self.outcomes if o.predicted == label]
            hits = sum(o.predicted == label for o in actual)
            recall = hits / len(actual) if actual else 1.0
            precision = (
                sum(o.row.label == label for o in predicted) / len(predicted) if predicted else 1.0
            )
            table[label] = (len(actual), recall, precision)
        return table

    def emergency_recall_by_concept(self) -> dict[str, tuple[int, int]]:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for o in self._of("emergency"):
            counts[o.row.concept][0] += 1
            counts[o.row.concept][1] += o.result.urgency is Priority.EMERGENCY
        return {concept: (n, hit) for concept, (n, hit) in sorted(counts.items())}

    def report(self) -> str:
        lines = [f"{len(self.outcomes)} messages"]
        languages = Counter(o.row.language for o in self.outcomes)
        lines.append("languages: " + ", ".join(f"{k} {v}" for k, v in sorted(languages.items())))
        lines.append(f"{'class':<11} {'n':>5} {'recall':>7} {'precision':>9}")
        for label, (n, recall, precision) in self.per_class().items():
            lines.append(f"{label:<11} {n:>5} {recall:>7.1%} {precision:>9.1%}")
        lines.append(f"emergency recall: {self.emergency_recall:.1%}")
        lines.append(f"false emergencies: {len(self.false_emergencies)}")
        lines.append(f"clinical answered at L1: {len(self.clinical_answered_automatically)}")
        lines.append(
            f"complaints, suggestions, praise to the right department: {self.feedback_routed:.1%}"
        )
        lines.append(f"routine questions answered correctly: {self.routine_answered:.1%}")
        lines.append(f"wrong automatic answers: {len(self.wrong_answers)}")
        return "\n".join(lines)


def _answered_right(outcome: Outcome) -> bool:
    answer = outcome.result.knowledge_answer
    automatic = outcome.answered_automatically and answer is not None
    if outcome.row.kb_topic == "none":
        return not automatic
    return automatic and answer is not None and answer.id == outcome.row.kb_topic


def evaluate(
    rows: Iterable[CorpusRow],
    triage: Callable[[TriageRequest], TriageResult],
    *,
    routing_table: dict[str, str],
    departments: set[str],
) -> Evaluation:
    """Triage and route every row as a patient's own message would be."""
    evaluation = Evaluation()
    for row in rows:
        result = triage(
            TriageRequest(
                text=row.text,
                source=TicketSource.PATIENT_MESSAGE,
                pathway_id=row.pathway or None,
                discharge_department=row.discharge_department or None,
            )
        )
        if result.intent == "praise":
            department: str | None = row.discharge_department or None
        else:
            department = choose_department(
                RoutingRequest(
                    category=result.category,
                    clinical=result.clinical,
                    source=TicketSource.PATIENT_MESSAGE,
                    tier=result.suggested_tier,
                    priority=result.urgency,
                    discharge_department=row.discharge_department or None,
                    pathway_id=row.pathway or None,
                ),
                plugin_choice=None,
                known_departments=departments,
                table=routing_table,
            )
        evaluation.outcomes.append(Outcome(row, result, department))
    return evaluation
