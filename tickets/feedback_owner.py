"""Whose feedback it is: a model of which service a complaint or suggestion is about.

The intent cues (:mod:`suifang.tickets.intent`) name an owner when the patient names one ("the
cashier", "停车场"); but a complaint often names it only in passing, or not at all ("the soft
diet after her hip op was the same as the normal one", "病房厕所堵了两天"), and then the
category model — trained on questions and reports more than on complaints — guesses. This
model is trained on labelled feedback instead: ``templates/triage/feedback_examples.csv``,
written from the tuning corpus by ``suifang triage owner-examples`` (never from the held-out
one). Each example's label is the service category that owns it (a complaint's department
mapped back through the routing table), ``praise``, or what a non-feedback message is
(``clinical``, ``question``), so the model also learns what feedback is *not*.

The triage policy uses it in two places only, each where the measured gain was clear (see
docs/triage.md): a complaint or suggestion goes to the service the model is sure of; and a
message the rules read as a report or a question, that has a word of grievance, suggestion or
a named service, no automatic answer and nothing urgent, is feedback when the model says so.
It never touches danger: emergencies and urgent findings are decided before it is asked.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from suifang.core.categories import CATEGORIES
from suifang.core.errors import ValidationFailed
from suifang.core.seed import default_routing
from suifang.tickets.classifier import NaiveBayes, message_features
from suifang.tickets.danger import triage_file

__all__ = [
    "OWNER_LABELS",
    "FeedbackOwner",
    "OwnerExample",
    "Ownership",
    "default_feedback_owner",
    "load_owner_examples",
    "owner_label",
]

_HEADER = ["text", "language", "owner"]
_SERVICES: tuple[str, ...] = tuple(
    c.id for c in CATEGORIES if c.kind == "service" or c.id == "suggestion"
)
OWNER_LABELS: tuple[str, ...] = (*_SERVICES, "praise", "clinical", "question")
"""What an example may be labelled: a service that owns feedback, thanks, or not feedback."""
_SMOOTHING = 0.3
_TEMPERATURE = 3.5  # as the category model: softened naive-Bayes posteriors

SURE_OWNER = 0.9
"""How sure the model must be of a service to overrule the cues' owner of a complaint. On the
tuning corpus (5-fold) it moved 29 misrouted complaints to the right department and 6 right
ones to a wrong one; on a blind set written afterwards (set 9b, 160 feedback messages) routing
rose from 89.4 % to 91.3 %."""
LIKELY_FEEDBACK = 0.5
"""How likely feedback (any service) must be, with a service the most likely label, for a
report or question with a grievance, suggestion or service word to become feedback."""


@dataclass(frozen=True, slots=True)
class OwnerExample:
    text: str
    owner: str


def load_owner_examples(path: Path | None = None) -> list[OwnerExample]:
    """The labelled examples (the shipped file unless ``path`` is given); bad rows are named
    by line and column."""
    if path is None:
        content = (files("suifang.templates") / "triage" / "feedback_examples.csv").read_text(
            encoding="utf-8"
        )
        origin = "templates/triage/feedback_examples.csv"
    else:
        try:
            content, origin = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    reader = csv.reader(io.StringIO(content))
    if next(reader, None) != _HEADER:
        raise ValidationFailed(f"{origin}:1: the header must be {','.join(_HEADER)}")
    examples = []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(_HEADER):
            raise ValidationFailed(
                f"{origin}:{number}: expected {len(_HEADER)} columns, found {len(row)}"
            )
        text, _language, owner = row
        if owner not in OWNER_LABELS:
            raise ValidationFailed(
                f"{origin}:{number}: owner {owner!r} is not one of {', '.join(OWNER_LABELS)}"
            )
        if not text.strip():
            raise ValidationFailed(f"{origin}:{number}: empty text")
        examples.append(OwnerExample(text, owner))
    if not any(e.owner in _SERVICES for e in examples):
        raise ValidationFailed(f"{origin}: needs examples of complaints or suggestions")
    return examples


def owner_label(label: str, department: str, routing_table: Mapping[str, str]) -> str:
    """The training label of a corpus row: for a complaint or suggestion, the service category
    that stands for its department in the routing table; ``praise``; ``clinical`` for
    emergencies and clinical reports; ``question`` for routine questions.

    One category per department, because the department is what the labels say and what
    the model must be sure of: learning parking and the lifts apart, or waiting and the
    reception desk, would split one department's evidence over several labels.
    """
    if label == "praise":
        return "praise"
    if label in ("emergency", "clinical"):
        return "clinical"
    if label == "routine":
        return "question"
    owners = [c for c in _SERVICES if routing_table.get(c) == department]
    if not owners:
        raise ValidationFailed(
            f"no service category is routed to {department!r}: check the routing table"
        )
    return next((c for c in _GENERAL_FIRST if c in owners), owners[0])


# Of several services routed to one department, the one that stands for it.
_GENERAL_FIRST = ("other", "environment", "nursing_care", "doctor_conduct")


@dataclass(frozen=True, slots=True)
class Ownership:
    service: str | None
    """The most likely service owner, or None when the model knows nothing of the text."""
    probability: float
    feedback: float
    """How likely the message is feedback about any service at all."""
    top: str
    """The most likely label overall (a service, praise, clinical or question)."""


class FeedbackOwner:
    """Naive Bayes over :func:`message_features`, trained on labelled feedback.

    Its labels stand for departments (see :func:`owner_label`); ``routing_table`` (the one the
    examples were labelled with) says which categories a label stands for, so that a more
    specific category the patient named (parking, where the label is environment: both go to
    logistics) is kept.
    """

    def __init__(self, model: NaiveBayes, routing_table: Mapping[str, str]) -> None:
        self._model = model
        self._routing = dict(routing_table)

    @classmethod
    def train(
        cls, examples: Iterable[OwnerExample], routing_table: Mapping[str, str]
    ) -> FeedbackOwner:
        return cls(
            NaiveBayes.fit([(message_features(e.text), e.owner) for e in examples], _SMOOTHING),
            routing_table,
        )

    def _specific(self, service: str, named: str | None) -> str:
        """The category the patient named when it belongs to the same department."""
        if named is not None and self._routing.get(named) == self._routing.get(service, service):
            return named
        return service

    def read(self, text: str) -> Ownership:
        probabilities, known = self._model.posterior(message_features(text), _TEMPERATURE)
        if not known:
            return Ownership(None, 0.0, 0.0, "question")
        ranked = sorted(zip(self._model.labels, probabilities, strict=True), key=lambda p: -p[1])
        services = [(label, p) for label, p in ranked if label in _SERVICES]
        service, probability = services[0] if services else (None, 0.0)
        return Ownership(service, probability, sum(p for _, p in services), ranked[0][0])

    def owner(self, text: str, named: str | None) -> str | None:
        """Who owns a complaint or suggestion: the service the model is sure of (or ``named``,
        the category the cues found, when it belongs to the same department); ``named`` when
        the model is not sure."""
        reading = self.read(text)
        if reading.service is None or reading.probability < SURE_OWNER:
            return named
        return self._specific(reading.service, named)

    def likely_feedback(self, text: str, named: str | None) -> str | None:
        """The service a message most likely complains about, when feedback is its most likely
        reading, else None."""
        reading = self.read(text)
        if reading.service is None or not (
            reading.top in _SERVICES and reading.feedback >= LIKELY_FEEDBACK
        ):
            return None
        return self._specific(reading.service, named)


@functools.cache
def default_feedback_owner() -> FeedbackOwner:
    """Trained on the examples in use (the hospital's ``SUIFANG_TRIAGE_DIR/
    feedback_examples.csv`` or the shipped ones), once per process."""
    return FeedbackOwner.train(
        load_owner_examples(triage_file("feedback_examples.csv")), default_routing()
    )
