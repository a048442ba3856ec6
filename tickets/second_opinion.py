"""A second opinion on "is this an emergency?", learned from labelled messages.

The danger lexicon (:mod:`suifang.tickets.danger`) says *why* a message is an emergency and
is what an administrator edits; but a patient can always find words it does not know yet. This
model reads the message the way the category model does (character n-grams, words and word
pairs, :func:`suifang.tickets.classifier.message_features`) and is trained on the labelled
examples in ``templates/triage/emergency_examples.csv`` — the tuning corpus, never the held-out
one. The triage policy uses it only to *raise*: when the lexicon did not see an emergency and
the model is sure it is one, the message is treated as an emergency ("when unsure between
emergency and not, choose emergency"); it never lowers what the lexicon found, and it stays
silent when every danger word the lexicon saw was denied, past or hypothetical.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from suifang.core.errors import ValidationFailed
from suifang.tickets.classifier import NaiveBayes, message_features
from suifang.tickets.danger import triage_file

__all__ = ["SecondOpinion", "default_second_opinion", "load_examples"]

_HEADER = ["text", "language", "emergency"]
_SMOOTHING = 0.3
THRESHOLD = 0.97
"""How sure the model must be. Chosen on the tuning corpus (trained on its first two sets,
checked on the third): it caught 27 of the 29 emergencies the lexicon missed there and raised
none of the 90 near misses written to look like emergencies."""


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    emergency: bool


def load_examples(path: Path | None = None) -> list[Example]:
    """The labelled examples (the shipped file unless ``path`` is given); bad rows are named
    by line."""
    if path is None:
        content = (files("suifang.templates") / "triage" / "emergency_examples.csv").read_text(
            encoding="utf-8"
        )
        origin = "templates/triage/emergency_examples.csv"
    else:
        try:
            content, origin = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    reader = csv.reader(io.StringIO(content))
    header = next(reader, None)
    if header != _HEADER:
        raise ValidationFailed(f"{origin}:1: the header must be {','.join(_HEADER)}")
    examples = []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(_HEADER):
            raise ValidationFailed(f"{origin}:{number}: expected 3 columns, found {len(row)}")
        text, _language, label = row
        if label not in ("yes", "no"):
            raise ValidationFailed(f"{origin}:{number}: emergency must be yes or no")
        if not text.strip():
            raise ValidationFailed(f"{origin}:{number}: empty text")
        examples.append(Example(text, label == "yes"))
    if not any(e.emergency for e in examples) or all(e.emergency for e in examples):
        raise ValidationFailed(f"{origin}: needs examples of both emergencies and the rest")
    return examples


class SecondOpinion:
    """How likely a message is an emergency, by a naive Bayes model over its n-grams."""

    def __init__(self, model: NaiveBayes) -> None:
        self._model = model
        self._emergency = model.labels.index("emergency")

    @classmethod
    def train(cls, examples: Iterable[Example]) -> SecondOpinion:
        return cls(
            NaiveBayes.fit(
                [
                    (message_features(e.text), "emergency" if e.emergency else "other")
                    for e in examples
                ],
                _SMOOTHING,
            )
        )

    def probability(self, text: str) -> float:
        """The model's probability that ``text`` describes an emergency now (0 when it knows
        none of the message's features)."""
        probabilities, known = self._model.posterior(message_features(text), 1.0)
        return probabilities[self._emergency] if known else 0.0

    def is_sure(self, text: str) -> bool:
        return self.probability(text) >= THRESHOLD


@functools.cache
def default_second_opinion() -> SecondOpinion:
    """Trained on the examples in use (the hospital's ``SUIFANG_TRIAGE_DIR/
    emergency_examples.csv`` or the shipped ones), once per process."""
    return SecondOpinion.train(load_examples(triage_file("emergency_examples.csv")))
