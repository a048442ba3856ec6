"""Danger in what a patient wrote: clinical concepts found in segmented, cue-aware text.

The lexicon (``templates/triage/red_flags.yaml``, validated by :class:`LexiconSpec`) names
words by meaning — body sites, symptoms, qualifiers, contexts — and the concepts a hospital
must act on as patterns over them: chest × pain, bleeding × won't stop, a burden × "I",
fever × after surgery. :meth:`DangerDetector.assess` reads a message in four steps:

1. **Normalise**: NFKC, lower case, traditional → simplified Chinese (OpenCC), English
   apostrophes dropped (can't → cant), Chinese numerals next to a measurement turned into
   digits (血糖二点八 → 2.8, :mod:`suifang.tickets.vitals`).
2. **Segment**: sentences and clauses (punctuation, a space between Chinese characters, a
   contrast word such as 但是/but), and every lexicon phrase found longest-first, so 喘不上气
   is one word whose 不 negates nothing and 血压 is not bleeding. An English word of six
   letters or more also matches a lexicon word one typo away (bleading → bleeding).
3. **Cues**: each word is current, negated (没有胸痛: the negation is separated from the word
   by filler only), resolved (胸痛了一阵，现在好了; recent: 昨天晕倒了一次), in the distant past
   (上个月胸痛过, for years) or hypothetical (如果胸痛怎么办). A present or recurrence cue later
   in the sentence (又, 现在, again) undoes the past and the resolution.
4. **Concepts**: a pattern's words must sit in one clause (a symptom binds to the sites
   written just before it: 头疼胸口痒 is a head pain), its ``+`` words anywhere, its context in
   the pathway or the message. A match's level is the concept's, or its ``mild``,
   ``resolved`` or ``negated`` level; numbers are checked against the ``vitals`` limits.

Nothing here is a statistical model: every finding names the concept and the words that made
it, so a nurse sees why, and an administrator fixes a miss by adding a phrase.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import opencc
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from rapidfuzz.distance import DamerauLevenshtein
from spellchecker import SpellChecker

from suifang.core.categories import CLINICAL_CATEGORIES
from suifang.core.config import get_settings
from suifang.core.errors import ValidationFailed
from suifang.core.yaml_input import line_of, read_yaml
from suifang.tickets import vitals as vital_signs
from suifang.tickets.soundalike import SoundAlikes

__all__ = [
    "LEVELS",
    "DangerAssessment",
    "DangerDetector",
    "Finding",
    "LexiconSpec",
    "compile_phrases",
    "default_detector",
    "normalize",
    "triage_file",
]

Level = Literal["emergency", "urgent", "clinical"]
LEVELS: tuple[Level, ...] = ("clinical", "urgent", "emergency")
_RANK = {level: rank for rank, level in enumerate(LEVELS, start=1)}
_Outcome = Literal["emergency", "urgent", "clinical", "none"]
Status = Literal["current", "resolved", "negated", "past", "hypothetical"]
_CUES = (
    "negation",
    "filler",
    "resolved",
    "persisting",
    "distant_past",
    "recent_past",
    "present",
    "recurrence",
    "hypothetical",
    "hypothetical_after",
    "mild",
    "tolerable",
    "question",
    "contrast",
    "comparison",
    "symptom_over",
)
_Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
_SLUG = r"^[a-z0-9][a-z0-9_]*$"
_Slug = Annotated[str, StringConstraints(pattern=_SLUG)]

# --------------------------------------------------------------------------- the lexicon file


class _Phrases(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    zh_cn: list[_Phrase] = Field(default_factory=list, alias="zh-CN")
    en: list[_Phrase] = Field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.zh_cn, *self.en]


class GroupSpec(_Phrases):
    """Words of one meaning, with the role they play in a pattern."""

    kind: Literal["site", "symptom", "qualifier", "context", "ignore"]
    typed_after_site: bool = False
    """Also read a one-character homophone of this group's one-character words right after
    a body site (胸口通 → 痛): for the few symptoms patients type that way."""


class ConceptSpec(BaseModel):
    """Something the hospital must act on, and the patterns that say it is present."""

    model_config = ConfigDict(extra="forbid")

    id: _Slug
    level: Level
    category: str
    description: str = Field(min_length=1)
    advice: _Slug | None = None
    match: list[list[_Phrase]] = Field(min_length=1)
    mild: _Outcome | None = None
    resolved: _Outcome | None = None
    negated: _Outcome = "none"
    unless: list[_Slug] = Field(default_factory=list)
    """Groups that explain the words away when named anywhere in the message (iron tablets
    blacken stools; a burden "money-wise" is not suicidal)."""
    despite: list[_Slug] = Field(default_factory=list)
    """Groups that keep the concept even with an ``unless`` word present (money worries do
    not explain away "一了百了" or a bottle of pesticide)."""
    unless_reading: dict[vital_signs.VitalKind, float] = Field(default_factory=dict)
    """A current reading at or above this value rules the concept out (a glucose of 5.2 is
    not a hypo, whatever the symptoms)."""
    in_questions: bool = True
    """False: words in a question do not fire it ("要打120吗?" asks, it does not tell)."""

    @field_validator("category")
    @classmethod
    def _clinical(cls, value: str) -> str:
        if value not in CLINICAL_CATEGORIES:
            known = ", ".join(sorted(CLINICAL_CATEGORIES))
            raise ValueError(f"{value!r} is not a clinical category; one of {known}")
        return value

    @field_validator("match")
    @classmethod
    def _patterns_not_empty(cls, value: list[list[str]]) -> list[list[str]]:
        for number, pattern in enumerate(value):
            if not pattern:
                raise ValueError(f"pattern {number + 1} has no words")
            if all(slot.startswith(("+", "context:")) for slot in pattern):
                raise ValueError(
                    f"pattern {number + 1} needs at least one word in the clause itself "
                    "(a slot without + or context:)"
                )
        return value


class VitalRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    below: float | None = None
    above: float | None = None
    level: Level
    concept: _Slug
    with_: list[_Slug] = Field(default_factory=list, alias="with")
    context: _Slug | None = None
    advice: _Slug | None = None
    """The advice template for the patient (else the concept's, if the concept is defined)."""

    @model_validator(mode="after")
    def _one_limit(self) -> VitalRule:
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of below or above")
        return self

    def holds(self, value: float) -> bool:
        if self.below is not None:
            return value < self.below
        return value > self.above  # type: ignore[operator]


class LexiconSpec(BaseModel):
    """The whole ``red_flags.yaml``, validated: every name a pattern uses must exist."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[2]
    pathway_context: dict[str, list[_Slug]] = Field(default_factory=dict)
    groups: dict[_Slug, GroupSpec]
    cues: dict[Literal[_CUES], _Phrases]  # type: ignore[valid-type]
    concepts: list[ConceptSpec] = Field(min_length=1)
    vitals: dict[vital_signs.VitalKind, list[VitalRule]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_exist(self, info: ValidationInfo) -> LexiconSpec:
        if info.context and info.context.get("references") == "later":
            return self  # load_lexicon reports them with their lines
        problems = self.reference_problems()
        if problems:
            raise ValueError("; ".join(f"{_dotted(loc)}: {message}" for loc, message in problems))
        return self

    def reference_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Names used but not defined (or defined twice), each with where it is used."""
        contexts = {name for name, group in self.groups.items() if group.kind == "context"}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[str] = set()
        for index, concept in enumerate(self.concepts):
            if concept.id in seen:
                problems.append((("concepts", index, "id"), f"the id {concept.id!r} is used twice"))
            seen.add(concept.id)
            for number, pattern in enumerate(concept.match):
                where = ("concepts", index, "match", number)
                for slot in pattern:
                    if slot.startswith("context:"):
                        name = slot.removeprefix("context:")
                        if name not in contexts:
                            problems.append(
                                (
                                    where,
                                    f"{name!r} is not a context group (context groups: "
                                    f"{', '.join(sorted(contexts)) or 'none'})",
                                )
                            )
                        continue
                    for name in slot.removeprefix("+").split("|"):
                        group = self.groups.get(name)
                        if group is None:
                            problems.append((where, f"unknown group {name!r}"))
                        elif group.kind == "context":
                            problems.append(
                                (where, f"group {name!r} is a context; write context:{name}")
                            )
                        elif group.kind == "ignore":
                            problems.append((where, f"group {name!r} only hides words"))
            for kind in ("unless", "despite"):
                for name in getattr(concept, kind):
                    if name not in self.groups:
                        problems.append((("concepts", index, kind), f"unknown group {name!r}"))
        for kind, rules in self.vitals.items():
            for number, rule in enumerate(rules):
                for name in rule.with_:
                    if name not in self.groups:
                        problems.append(
                            (("vitals", kind, number, "with"), f"unknown group {name!r}")
                        )
                if rule.context is not None and rule.context not in contexts:
                    problems.append(
                        (
                            ("vitals", kind, number, "context"),
                            f"{rule.context!r} is not a context group",
                        )
                    )
        for pathway, names in self.pathway_context.items():
            for name in names:
                if name not in contexts:
                    problems.append(
                        (("pathway_context", pathway), f"{name!r} is not a context group")
                    )
        return problems


def _dotted(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


# --------------------------------------------------------------------------- normalising

_CONVERTER = opencc.OpenCC("t2s")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAS_CJK = re.compile(f"[{_CJK}]")
_POSSESSIVE = re.compile(r"(?<=[a-z])['\u2019`]s(?![a-z])")
_APOSTROPHE = re.compile(r"(?<=[a-z])['\u2019`](?=[a-z])")
# Quotation marks around words ("the 'low sugar' dessert", 所谓的“糖尿病餐”) carry no
# meaning for the lexicon but would split a phrase from its neighbours.
_QUOTES = re.compile("[\"'`\u2018\u201c\u201d\u300c\u300d\u300e\u300f]")
_SPACES = re.compile(r"[ \t\u3000]+")


def normalize(text: str) -> str:
    """What the lexicon is matched against: NFKC, lower case, simplified, apostrophes dropped.

    The result has the same meaning as ``text`` but not the same length; spans of findings
    refer to it.
    """
    folded = unicodedata.normalize("NFKC", text).lower()
    if _HAS_CJK.search(folded):
        folded = _CONVERTER.convert(folded)
    folded = _APOSTROPHE.sub("", _POSSESSIVE.sub("", folded.replace("\u2019", "'")))
    folded = _QUOTES.sub("", folded)
    folded = vital_signs.spell_out_numbers(folded)
    return _SPACES.sub(" ", folded).strip()


_AGE = "{age}"
_AGES = range(20, 100)


def _ages_spelled_out(phrase: str) -> list[str]:
    """A cue phrase with every adult age in place of ``{age}`` (at {age} → at 20 … at 99):
    an age dates what it is said of, as a year does."""
    if _AGE not in phrase:
        return [phrase]
    return [phrase.replace(_AGE, str(age)) for age in _AGES]


def _phrase_key(phrase: str) -> str:
    return normalize(phrase)


def _alternation(phrases: Iterable[str]) -> re.Pattern[str]:
    """One pattern for all ``phrases`` (normalised already), longest first: Chinese ones
    anywhere, English ones as whole words, their last word also with -s/-es/-d/-ed/-ing."""
    chinese = sorted((p for p in phrases if _HAS_CJK.search(p)), key=len, reverse=True)
    latin = sorted((p for p in phrases if not _HAS_CJK.search(p)), key=len, reverse=True)
    latin_parts = []
    for phrase in latin:
        escaped = re.escape(phrase).replace(r"\ ", " ")
        last_word = phrase.rsplit(" ", 1)[-1]
        suffix = _SUFFIXES if last_word.isalpha() and len(last_word) >= 3 else ""
        latin_parts.append(escaped + suffix)
    parts = []
    if chinese:
        parts.append("|".join(re.escape(p) for p in chinese))
    if latin_parts:
        parts.append(rf"(?<![a-z0-9])(?:{'|'.join(latin_parts)})(?![a-z])")
    return re.compile("|".join(parts) or r"(?!x)x")


def compile_phrases(phrases: Iterable[str]) -> re.Pattern[str]:
    """A matcher for cue phrases as the lexicon matches its own (see :func:`normalize`)."""
    return _alternation({key for key in map(_phrase_key, phrases) if key})


# --------------------------------------------------------------------------- segmenting

_SENTENCE_END = re.compile(r"[。！？!?;；\n]+|\.{2,}|…+|(?<!\d)\.(?!\d)")
_CLAUSE_END = re.compile(rf"[，,:：~～()（）\[\]【】\"“”]|(?<=[{_CJK}]) (?=[{_CJK}])")
_ASIDE = re.compile(r"[(（][^()（）]*[)）]")
_LATIN_WORD = re.compile(r"[a-z]+")
_SUFFIXES = r"(?:s|es|d|ed|ing)?"
_TYPO_MIN = 5
"""Shorter English words are not corrected: too many real words are one letter away."""


@dataclass(slots=True)
class Token:
    """One lexicon phrase found in a message."""

    start: int
    end: int
    text: str
    groups: frozenset[str]
    cues: frozenset[str]
    latin: bool
    sentence: int = 0
    clause: int = 0
    status: Status = "current"
    mild: bool = False
    severe: bool = False
    bound: tuple[int, ...] = ()
    """Indexes of the site tokens this symptom token is about."""
    aside: int = -1
    """The parenthesis the token is in (its start), or -1."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A concept present in the message, at a level, and the words that showed it."""

    concept: str
    level: Level
    category: str
    advice: str | None
    status: Status
    evidence: str


@dataclass(frozen=True)
class DangerAssessment:
    """Every concept found in one message; the most serious one decides."""

    findings: tuple[Finding, ...]
    contexts: frozenset[str]
    mentions: frozenset[Status] = frozenset()
    """The states the message's symptom words are in (current, negated, past…)."""
    readings: tuple[vital_signs.Reading, ...] = ()
    """The measurements in the message, as the vitals limits read them."""
    now: str = ""
    """The message as the patient's state now: its symptom words that are denied, in the past
    or hypothetical blanked out (what a second reader should judge)."""

    @property
    def only_denied(self) -> bool:
        """Danger words were written, but none of them is the patient's state now: each is
        denied, over, in the past or hypothetical (没有胸痛; if I get chest pain…)."""
        return bool(self.mentions) and "current" not in self.mentions

    @property
    def level(self) -> Level | None:
        if not self.findings:
            return None
        return max(self.findings, key=lambda f: _RANK[f.level]).level

    def at(self, level: Level) -> list[Finding]:
        return [finding for finding in self.findings if finding.level == level]

    @property
    def emergencies(self) -> list[Finding]:
        return self.at("emergency")

    @property
    def concepts(self) -> list[str]:
        return [finding.concept for finding in self.findings]

    @property
    def advice(self) -> list[str]:
        """Advice templates of the emergencies, most specific first, each once."""
        seen: list[str] = []
        for finding in self.emergencies:
            if finding.advice and finding.advice not in seen:
                seen.append(finding.advice)
        return seen


@dataclass(frozen=True, slots=True)
class _Slot:
    groups: frozenset[str]
    scope: Literal["clause", "message", "context"]
    site: bool


@dataclass(frozen=True, slots=True)
class _Concept:
    spec: ConceptSpec
    patterns: tuple[tuple[_Slot, ...], ...]


@dataclass(slots=True)
class _Message:
    text: str
    tokens: list[Token]
    contexts: frozenset[str]
    by_group: dict[str, list[int]] = field(default_factory=dict)
    readings: list[vital_signs.Reading] = field(default_factory=list)


class DangerDetector:
    """The compiled lexicon: phrase matcher, cue rules, concepts and vital-sign limits."""

    #: How far (in characters) a negation may reach over filler words, and a site from its
    #: symptom: Chinese (False) and English (True) text.
    BIND_WINDOW: ClassVar[Mapping[bool, int]] = {False: 16, True: 48}

    def __init__(self, spec: LexiconSpec) -> None:
        self.spec = spec
        self.site_groups = frozenset(n for n, g in spec.groups.items() if g.kind == "site")
        self.symptom_groups = frozenset(n for n, g in spec.groups.items() if g.kind == "symptom")
        self.context_groups = frozenset(n for n, g in spec.groups.items() if g.kind == "context")
        self._typed_after_site = frozenset(
            n for n, g in spec.groups.items() if g.typed_after_site and g.kind == "symptom"
        )
        phrases: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
        for name, group in spec.groups.items():
            for phrase in group.all():
                key = _phrase_key(phrase)
                if key:
                    phrases[key][0].add(name if group.kind != "ignore" else "")
        self._age_phrases: set[str] = set()
        for cue, words in spec.cues.items():
            for phrase in words.all():
                for concrete in _ages_spelled_out(phrase):
                    key = _phrase_key(concrete)
                    if key:
                        phrases[key][1].add(cue)
                        if concrete != phrase:
                            self._age_phrases.add(key)
        self._phrases = {
            key: (frozenset(g for g in groups if g), frozenset(cues))
            for key, (groups, cues) in phrases.items()
        }
        self._matcher = _alternation(self._phrases)
        self._sounds = SoundAlikes(
            (key for key, (groups, _cues) in self._phrases.items() if groups),
            (
                key
                for key, (groups, _cues) in self._phrases.items()
                if groups & self._typed_after_site
            ),
        )
        # Single English words a typo may stand for, by first letter.
        self._typo_targets: dict[str, list[str]] = defaultdict(list)
        for key, (groups, _cues) in self._phrases.items():
            if groups and key.isalpha() and key.isascii() and len(key) >= _TYPO_MIN:
                self._typo_targets[key[0]].append(key)
        self.concepts = tuple(
            _Concept(concept, tuple(self._pattern(p) for p in concept.match))
            for concept in spec.concepts
        )
        self._concept_of = {concept.id: concept for concept in spec.concepts}

    # ----------------------------------------------------------------- building

    def _pattern(self, slots: Sequence[str]) -> tuple[_Slot, ...]:
        compiled = []
        for slot in slots:
            if slot.startswith("context:"):
                name = slot.removeprefix("context:")
                compiled.append(_Slot(frozenset({name}), "context", False))
                continue
            scope: Literal["clause", "message"] = "message" if slot.startswith("+") else "clause"
            groups = frozenset(slot.removeprefix("+").split("|"))
            compiled.append(_Slot(groups, scope, groups <= self.site_groups))
        return tuple(compiled)

    @classmethod
    def load(cls, path: Path | None = None) -> DangerDetector:
        """Read and validate a lexicon file (the shipped one unless ``path`` is given)."""
        return cls(load_lexicon(path))

    # ----------------------------------------------------------------- reading a message

    def segment(self, text: str, *, pathway_id: str | None = None) -> _Message:
        normalized = normalize(text)
        tokens = self._tokens(normalized)
        self._place(normalized, tokens)
        contexts = set(self.spec.pathway_context.get(pathway_id or "", ()))
        readings = vital_signs.readings(normalized)
        # "at 60" dates an event (had a heart attack at 60); in "sugar at 40" it is a reading.
        tokens = [
            t
            for t in tokens
            if t.text not in self._age_phrases
            or not any(r.start < t.end and t.start < r.end for r in readings)
        ]
        message = _Message(normalized, tokens, frozenset(), readings=readings)
        for index, token in enumerate(tokens):
            for group in token.groups:
                message.by_group.setdefault(group, []).append(index)
        self._statuses(message)
        self._threshold_questions(message)
        self._bind(message)
        for group in self.context_groups:
            # "Had surgery on Tuesday" is the context now; "surgery years ago" is not.
            if any(
                tokens[i].status in ("current", "resolved") for i in message.by_group.get(group, ())
            ):
                contexts.add(group)
        message.contexts = frozenset(contexts)
        return message

    def _tokens(self, text: str) -> list[Token]:
        tokens: list[Token] = []
        covered: list[tuple[int, int]] = []
        for match in self._matcher.finditer(text):
            phrase = match.group()
            key = phrase if phrase in self._phrases else self._stem(phrase)
            groups, cues = self._phrases.get(key, (frozenset(), frozenset()))
            tokens.append(
                Token(match.start(), match.end(), phrase, groups, cues, not _HAS_CJK.search(phrase))
            )
            covered.append((match.start(), match.end()))
        tokens = self._sound_alikes(text, tokens)
        covered = [(token.start, token.end) for token in tokens]
        starts = [start for start, _ in covered]
        for word in _LATIN_WORD.finditer(text):
            if len(word.group()) < _TYPO_MIN:
                continue
            position = bisect.bisect_right(starts, word.start()) - 1
            if position >= 0 and covered[position][1] > word.start():
                continue  # part of a phrase already found
            target = self._typo(word.group())
            if target is not None:
                groups, cues = self._phrases[target]
                tokens.append(Token(word.start(), word.end(), word.group(), groups, cues, True))
        tokens.sort(key=lambda token: token.start)
        return tokens

    def _sound_alikes(self, text: str, tokens: list[Token]) -> list[Token]:
        """``tokens`` with the Chinese words written as a homophone added (兄口 → 胸口);
        the phrases a sound-alike swallows give way to it, as a longer phrase would."""
        chinese = [t for t in tokens if not t.latin]
        after_site = frozenset(t.end for t in chinese if t.groups & self.site_groups)
        found = self._sounds.find(text, {t.start: t.end for t in chinese}, after_site)
        if not found:
            return tokens
        kept = [t for t in tokens if not any(f.start <= t.start and t.end <= f.end for f in found)]
        for alike in found:
            groups, cues = self._phrases[alike.phrase]
            kept.append(
                Token(alike.start, alike.end, text[alike.start : alike.end], groups, cues, False)
            )
        kept.sort(key=lambda token: token.start)
        return kept

    def _stem(self, phrase: str) -> str:
        for suffix in ("ing", "ed", "es", "s", "d"):
            if phrase.endswith(suffix) and phrase[: -len(suffix)] in self._phrases:
                return phrase[: -len(suffix)]
        return phrase

    def _typo(self, word: str) -> str | None:
        """The lexicon word ``word`` is a one-letter slip of, if it is not an English word
        itself (cooking is not a typo of choking)."""
        if word in _english():
            return None
        for candidate in self._typo_targets.get(word[0], ()):
            if abs(len(candidate) - len(word)) <= 1 and (
                DamerauLevenshtein.distance(word, candidate, score_cutoff=1) <= 1
            ):
                return candidate
        return None

    def _place(self, text: str, tokens: list[Token]) -> None:
        """Sentence and clause numbers; a contrast word starts a clause of its own."""
        sentence_breaks = [m.start() for m in _SENTENCE_END.finditer(text)]
        clause_breaks = sorted(
            {m.start() for m in _CLAUSE_END.finditer(text)}
            | set(sentence_breaks)
            | {t.start for t in tokens if "contrast" in t.cues}
        )
        asides = [m.span() for m in _ASIDE.finditer(text)]
        for token in tokens:
            token.sentence = bisect.bisect_right(sentence_breaks, token.start)
            token.clause = bisect.bisect_right(clause_breaks, token.start)
            token.aside = next((s for s, e in asides if s < token.start < e), -1)

    # ----------------------------------------------------------------- cues

    def _only_filler(self, text: str, start: int, end: int, tokens: list[Token]) -> bool:
        """Whether text[start:end] is made of filler words and lexicon words only."""
        gap = text[start:end]
        if not gap.strip():
            return True
        position = start
        for token in tokens:
            if token.end <= start or token.start >= end:
                continue
            if token.start > position and text[position : token.start].strip():
                return False
            if not (token.groups or "filler" in token.cues or "mild" in token.cues):
                return False
            position = max(position, token.end)
        return not text[position:end].strip()

    def _statuses(self, message: _Message) -> None:
        tokens, text = message.tokens, message.text
        answered_no = self._questions_answered_no(message)
        for token in tokens:
            if not token.groups:
                continue
            sentence = [t for t in tokens if t.sentence == token.sentence]
            clause = [t for t in sentence if t.clause == token.clause]
            tolerable = any("tolerable" in t.cues for t in sentence)
            token.mild = tolerable or (
                any("mild" in t.cues for t in clause)
                and not any("severe" in t.groups for t in clause)
            )
            token.severe = any("severe" in t.groups for t in clause) and not tolerable
            token.status = self._status(token, sentence, clause, text, tokens)
            if token.sentence in answered_no and token.status == "current":
                token.status = "negated"

    def _threshold_questions(self, message: _Message) -> None:
        """A sentence asking about a threshold (血糖低于3.9怎么办？) is about "if", not now."""
        for reading in message.readings:
            if not reading.threshold_question:
                continue
            probe = Token(reading.start, reading.end, "", frozenset(), frozenset(), False)
            self._place(message.text, [*message.tokens, probe])
            for token in message.tokens:
                if token.sentence == probe.sentence and token.status == "current":
                    token.status = "hypothetical"

    @staticmethod
    def _questions_answered_no(message: _Message) -> set[int]:
        """Sentences that ask and are answered "no" at once by the next one ("pad soaked?
        nah, …"; "出血多吗？没有"): what they name is denied."""
        denied = set()
        for match in re.finditer(r"[?？]", message.text):
            asked = next((t.sentence for t in message.tokens if t.end <= match.start()), None)
            following = [t for t in message.tokens if t.start >= match.end()]
            if asked is None or not following:
                continue
            first = following[0]
            if first.sentence != asked and "negation" in first.cues:
                denied.add(max(t.sentence for t in message.tokens if t.end <= match.start()))
        return denied

    def _status(
        self,
        token: Token,
        sentence: list[Token],
        clause: list[Token],
        text: str,
        tokens: list[Token],
    ) -> Status:
        # A date in an aside dates the aside only: "my dad (stent last month) is clutching
        # his chest" is about now; a resolution in one still resolves ("腰疼（现在已经好了）").
        sentence = [
            t
            for t in sentence
            if t.aside == token.aside
            or t.aside == -1
            or not t.cues & {"distant_past", "recent_past", "present"}
        ]
        earlier = [t for t in sentence if t.end <= token.start]
        later = [t for t in sentence if t.start >= token.end]
        if any("hypothetical" in t.cues for t in earlier) or self._asked_about(
            token, later, text, tokens
        ):
            return "hypothetical"
        anchors = [t for t in earlier if self._anchor(t, sentence)]
        last = anchors[-1] if anchors else None
        if (
            last is not None
            and "distant_past" in last.cues
            and last.clause != token.clause
            and any("contrast" in t.cues and last.end <= t.start < token.start for t in sentence)
            and any("present" in t.cues and t.clause == token.clause for t in sentence)
        ):
            # "No history of epilepsy, but he is having convulsions right now": a turn, then
            # the present, in the symptom's own clause, dates it now.
            last = None
        ongoing = any(t.cues & {"persisting", "recurrence"} for t in clause)
        past_after = any(
            "distant_past" in t.cues
            and not self._compared(token, t, sentence)
            and (
                t.clause == token.clause
                or (self._bare_next_clause(t, token, sentence) and not ongoing)
            )
            for t in later
        )
        if (past_after or (last is not None and "distant_past" in last.cues)) and not (
            self._recurs(later, sentence)
        ):
            return "past"
        if self._negated(token, clause, text, tokens):
            return "negated"
        if self._resolved(token, sentence):
            return "resolved"
        recent = (
            last is not None and "recent_past" in last.cues and last.clause == token.clause
        ) or any(
            "recent_past" in t.cues
            and t.clause == token.clause
            and not self._compared(token, t, sentence)
            for t in later
        )
        if recent and not self._renewed(later, sentence):
            return "resolved"
        return "current"

    def _asked_about(
        self, token: Token, later: list[Token], text: str, tokens: list[Token]
    ) -> bool:
        """A question about preventing or handling the word follows it at once (低血糖要怎么预防;
        胸痛的话怎么办): only filler between, so "crushing chest pain and sweating, how do I
        avoid a heart attack" keeps the chest pain now."""
        return any(
            "hypothetical_after" in cue.cues
            and cue.clause == token.clause
            and self._only_filler(text, token.end, cue.start, tokens)
            for cue in later
        )

    @staticmethod
    def _compared(token: Token, past: Token, sentence: list[Token]) -> bool:
        """Whether a past cue after ``token`` is only what it is compared with (胸口疼，跟住院前
        一样; the same pain as before the stent): the symptom itself is now."""
        return any("comparison" in t.cues and token.end <= t.start < past.start for t in sentence)

    def _anchor(self, cue: Token, sentence: list[Token]) -> bool:
        """A time cue that dates what follows it: past ones always, a present one (现在,
        today) only when its clause does not just say it is over (现在好了)."""
        if cue.cues & {"distant_past", "recent_past"}:
            return True
        if "present" not in cue.cues:
            return False
        return not self._closing(cue, sentence)

    @staticmethod
    def _closing(cue: Token, sentence: list[Token]) -> bool:
        """Whether the clause of ``cue`` resolves or denies (现在不疼了, hasn't come back)."""
        return any(
            ("resolved" in t.cues or "negation" in t.cues)
            for t in sentence
            if t.clause == cue.clause and t is not cue
        )

    def _bare_next_clause(self, cue: Token, token: Token, sentence: list[Token]) -> bool:
        """``cue`` sits in the clause right after the word's, which names no symptom of its
        own (右手没劲，老样子)."""
        return cue.clause == token.clause + 1 and not any(
            t.clause == cue.clause and t.groups & self.symptom_groups for t in sentence
        )

    def _recurs(self, later: list[Token], sentence: list[Token]) -> bool:
        """A recurrence cue after the word (又开始, came back) that is not denied."""
        return any("recurrence" in cue.cues and not self._closing(cue, sentence) for cue in later)

    def _renewed(self, later: list[Token], sentence: list[Token]) -> bool:
        """Whether something after the word says it is still going on: a recurrence, a
        persisting cue (还没好, still), or a present cue with a symptom of its own."""
        if self._recurs(later, sentence):
            return True
        for cue in later:
            if "persisting" in cue.cues and not any(
                "resolved" in t.cues for t in sentence if t.clause == cue.clause
            ):
                return True
            if (
                "present" in cue.cues
                and not self._closing(cue, sentence)
                and any(
                    t.clause == cue.clause
                    and t.groups & self.symptom_groups
                    and not self._denied_in_clause(t, sentence)
                    for t in sentence
                )
            ):
                return True
        return False

    @staticmethod
    def _denied_in_clause(token: Token, sentence: list[Token]) -> bool:
        """A negation before ``token`` in its clause (现在…再没晕过 renews nothing)."""
        return any(
            "negation" in t.cues and t.clause == token.clause and t.end <= token.start
            for t in sentence
        )

    def _negated(self, token: Token, clause: list[Token], text: str, tokens: list[Token]) -> bool:
        for cue in clause:
            if "negation" not in cue.cues or cue.end > token.start:
                continue
            if token.start - cue.end > self.BIND_WINDOW[token.latin]:
                continue
            if self._only_filler(text, cue.end, token.start, tokens):
                return True
        return False

    def _resolved(self, token: Token, sentence: list[Token]) -> bool:
        """A resolution cue after the word in its sentence, with no other symptom named in
        between (胸口疼，头晕好了 resolves the dizziness only) and nothing renewing it after."""
        for cue in sentence:
            if "resolved" not in cue.cues or cue.start < token.end:
                continue
            if any(
                token.end <= t.start < cue.start and t.groups & self.symptom_groups
                for t in sentence
            ):
                return False
            if self._renewed([t for t in sentence if t.start > cue.end], sentence):
                continue
            return True
        return False

    def _bind(self, message: _Message) -> None:
        """Each symptom word's sites: those written since the previous symptom in its clause,
        else the first one right after it (pain in my chest); adjacent symptoms share them."""
        tokens = message.tokens
        by_clause: dict[int, list[int]] = defaultdict(list)
        for index, token in enumerate(tokens):
            if token.groups:
                by_clause[token.clause].append(index)
        for indexes in by_clause.values():
            previous_symptom: int | None = None
            for position, index in enumerate(indexes):
                token = tokens[index]
                if not token.groups & self.symptom_groups:
                    continue
                window = self.BIND_WINDOW[token.latin]
                start_from = tokens[previous_symptom].end if previous_symptom is not None else -1
                before = tuple(
                    i
                    for i in indexes[:position]
                    if tokens[i].groups & self.site_groups
                    and tokens[i].start >= start_from
                    and token.start - tokens[i].end <= window
                    and i != index
                )
                if not before:
                    after = []
                    for i in indexes[position + 1 :]:
                        if tokens[i].groups & self.symptom_groups and not (
                            tokens[i].groups & self.site_groups
                        ):
                            break
                        if (
                            tokens[i].groups & self.site_groups
                            and tokens[i].start - token.end <= window
                        ):
                            after.append(i)
                            break
                    before = tuple(after)
                if not before and previous_symptom is not None:
                    gap = token.start - tokens[previous_symptom].end
                    if gap <= 3:
                        before = tokens[previous_symptom].bound
                token.bound = before
                previous_symptom = index

    # ----------------------------------------------------------------- concepts

    def assess(self, text: str, *, pathway_id: str | None = None) -> DangerAssessment:
        """Every concept present in ``text`` and its level (see the module docstring)."""
        message = self.segment(text, pathway_id=pathway_id)
        findings: dict[str, Finding] = {}
        for concept in self.concepts:
            best = self._best(concept, message)
            if best is not None:
                findings[concept.spec.id] = best
        for finding in self._vitals(message):
            current = findings.get(finding.concept)
            if current is None or _RANK[finding.level] > _RANK[current.level]:
                findings[finding.concept] = finding
        ordered = sorted(findings.values(), key=lambda f: -_RANK[f.level])
        mentions = frozenset(
            token.status for token in message.tokens if token.groups & self.symptom_groups
        ) | frozenset("resolved" for token in message.tokens if "symptom_over" in token.cues)
        return DangerAssessment(
            tuple(ordered), message.contexts, mentions, tuple(message.readings), self._now(message)
        )

    def _now(self, message: _Message) -> str:
        """The message with its symptom words that are denied, past or hypothetical blanked.
        Resolved ones stay: a chest pain that stopped ten minutes ago is still news."""
        text = message.text
        for token in reversed(message.tokens):
            if token.groups & self.symptom_groups and token.status in (
                "negated",
                "past",
                "hypothetical",
            ):
                text = f"{text[: token.start]} {text[token.end :]}"
        return text

    def _best(self, concept: _Concept, message: _Message) -> Finding | None:
        spec = concept.spec

        def current(groups: list[str]) -> bool:
            return any(
                message.tokens[i].status == "current"
                for group in groups
                for i in message.by_group.get(group, ())
            )

        if current(spec.unless) and not current(spec.despite):
            return None
        if spec.unless_reading and any(
            reading.value >= spec.unless_reading[reading.kind]
            for reading in message.readings
            if reading.kind in spec.unless_reading
            and self._reading_status(reading, message) == "current"
        ):
            return None
        best: Finding | None = None
        for pattern in concept.patterns:
            for tokens in self._matches(pattern, message):
                finding = self._judge(concept.spec, tokens, message)
                if finding is not None and (
                    best is None or _RANK[finding.level] > _RANK[best.level]
                ):
                    best = finding
                    if best.level == concept.spec.level and best.status == "current":
                        return best
        return best

    def _matches(self, pattern: tuple[_Slot, ...], message: _Message) -> Iterable[list[Token]]:
        tokens = message.tokens
        for slot in pattern:
            if slot.scope == "context" and not (slot.groups & message.contexts):
                return
            if slot.scope == "message" and not any(
                tokens[i].status == "current"
                for group in slot.groups
                for i in message.by_group.get(group, ())
            ):
                return
        clause_slots = [slot for slot in pattern if slot.scope == "clause"]
        message_slots = [slot for slot in pattern if slot.scope == "message"]
        candidates = [
            sorted({i for group in slot.groups for i in message.by_group.get(group, ())})
            for slot in clause_slots
        ]
        if any(not options for options in candidates):
            return
        for first in candidates[0]:
            clause = tokens[first].clause
            for match in self._assign(clause_slots, candidates, [first], clause, message):
                # A word anywhere in the message, but another word than the clause's own:
                # two hypo symptoms are two words, not one read twice.
                if all(self._elsewhere(slot, match, message) for slot in message_slots):
                    yield match

    @staticmethod
    def _elsewhere(slot: _Slot, match: list[Token], message: _Message) -> bool:
        return any(
            message.tokens[i].status == "current" and message.tokens[i] not in match
            for group in slot.groups
            for i in message.by_group.get(group, ())
        )

    def _assign(
        self,
        slots: list[_Slot],
        candidates: list[list[int]],
        chosen: list[int],
        clause: int,
        message: _Message,
    ) -> Iterable[list[Token]]:
        tokens = message.tokens
        if len(chosen) == len(slots):
            if self._bound(slots, chosen, tokens):
                yield [tokens[i] for i in chosen]
            return
        for option in candidates[len(chosen)]:
            # One word may fill several slots when it means several things (痛到死 is a
            # pain and severe), but a group named twice needs two words.
            if tokens[option].clause != clause or (
                option in chosen and slots[len(chosen)] in slots[: len(chosen)]
            ):
                continue
            yield from self._assign(slots, candidates, [*chosen, option], clause, message)

    def _bound(self, slots: list[_Slot], chosen: list[int], tokens: list[Token]) -> bool:
        sites = [i for slot, i in zip(slots, chosen, strict=True) if slot.site]
        others = [
            i
            for slot, i in zip(slots, chosen, strict=True)
            if not slot.site and tokens[i].groups & self.symptom_groups
        ]
        return all(
            site == other or site in tokens[other].bound for site in sites for other in others
        )

    def _judge(self, spec: ConceptSpec, tokens: list[Token], message: _Message) -> Finding | None:
        if not spec.in_questions and any(self._in_question(t, message) for t in tokens):
            return None
        words = [t for t in tokens if t.groups & self.symptom_groups] or tokens
        statuses = {t.status for t in tokens}
        status: Status = "current"
        for candidate in ("hypothetical", "past", "negated", "resolved"):
            if candidate in statuses:
                status = candidate  # type: ignore[assignment]
                break
        level: _Outcome
        if status == "hypothetical":
            return None
        if status == "past":
            # A history of an emergency (去年心梗过, tried to end it years ago) is no
            # emergency now, but it is for a person to read, not an automatic answer.
            if spec.level != "emergency":
                return None
            level = "clinical"
            evidence = message.text[min(t.start for t in tokens) : max(t.end for t in tokens)]
            return Finding(spec.id, level, spec.category, None, status, evidence[:80])
        if status == "negated":
            level = spec.negated
        elif status == "resolved":
            level = spec.resolved or _down(spec.level)
        elif all(t.mild for t in words) and spec.mild is not None:
            level = spec.mild
        else:
            level = spec.level
        if level == "none":
            return None
        evidence = message.text[min(t.start for t in tokens) : max(t.end for t in tokens)]
        return Finding(spec.id, level, spec.category, spec.advice, status, evidence[:80])

    @staticmethod
    def _in_question(token: Token, message: _Message) -> bool:
        """Whether the sentence of ``token`` asks (a question mark, 吗, should I)."""
        end = _SENTENCE_END.search(message.text, token.end)
        if end and "?" in end.group():
            return True
        return any("question" in t.cues for t in message.tokens if t.sentence == token.sentence)

    # ----------------------------------------------------------------- numbers

    def _vitals(self, message: _Message) -> list[Finding]:
        findings = []
        present_groups = {
            group
            for group, indexes in message.by_group.items()
            if any(message.tokens[i].status == "current" for i in indexes)
        }
        for reading in self._latest_readings(message):
            status = self._reading_status(reading, message)
            if status in ("hypothetical", "past", "negated"):
                continue
            for rule in self.spec.vitals.get(reading.kind, ()):
                if not rule.holds(reading.value):
                    continue
                if rule.with_ and not present_groups.intersection(rule.with_):
                    continue
                if rule.context is not None and rule.context not in message.contexts:
                    continue
                concept = self._concept_of.get(rule.concept)
                level: Level = rule.level
                if status == "resolved" and level != "clinical":
                    level = _down(level)  # type: ignore[assignment]
                findings.append(
                    Finding(
                        rule.concept,
                        level,
                        concept.category if concept else "clinical_symptom",
                        rule.advice or (concept.advice if concept else None),
                        status,
                        message.text[reading.start : reading.end][:80],
                    )
                )
                break
        return findings

    @staticmethod
    def _latest_readings(message: _Message) -> list[vital_signs.Reading]:
        """The readings that say how the patient is: one of a kind followed by another of
        the same kind with "now" between them (9/10 after surgery, now 2/10) is history."""
        kept = []
        for index, reading in enumerate(message.readings):
            superseded = any(
                later.kind == reading.kind
                and any(
                    "present" in t.cues and reading.end <= t.start < later.start
                    for t in message.tokens
                )
                for later in message.readings[index + 1 :]
            )
            if not superseded:
                kept.append(reading)
        return kept

    def _reading_status(self, reading: vital_signs.Reading, message: _Message) -> Status:
        if reading.threshold_question:
            return "hypothetical"
        probe = Token(reading.start, reading.end, "", frozenset({"_reading"}), frozenset(), False)
        self._place(message.text, [*message.tokens, probe])
        sentence = [t for t in message.tokens if t.sentence == probe.sentence]
        clause = [t for t in sentence if t.clause == probe.clause]
        status = self._status(probe, sentence, clause, message.text, message.tokens)
        return "current" if status == "negated" else status


@functools.cache
def _english() -> SpellChecker:
    """pyspellchecker's English word list: what counts as a real word, not a typo."""
    return SpellChecker(language="en", distance=1)


def _down(level: Level) -> _Outcome:
    return {"emergency": "urgent", "urgent": "clinical", "clinical": "none"}[level]  # type: ignore[return-value]


# --------------------------------------------------------------------------- loading


def _builtin_text() -> tuple[str, str]:
    resource = files("suifang.templates") / "triage" / "red_flags.yaml"
    return resource.read_text(encoding="utf-8"), "templates/triage/red_flags.yaml"


def load_lexicon(path: Path | None = None) -> LexiconSpec:
    """The validated lexicon; errors say ``file:line: where: what``."""
    if path is None:
        content, origin = _builtin_text()
    else:
        try:
            content, origin = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    try:
        root, data = read_yaml(content)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark else origin
        raise ValidationFailed(
            f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed(f"{origin}:1: a red-flag lexicon is a mapping (groups, concepts, …)")
    try:
        spec = LexiconSpec.model_validate(data, context={"references": "later"})
    except ValidationError as exc:
        problems = [
            (tuple(error["loc"]), error["msg"].removeprefix("Value error, "))
            for error in exc.errors()
        ]
    else:
        problems = spec.reference_problems()
        if not problems:
            return spec
    raise ValidationFailed(
        "invalid red-flag lexicon\n  "
        + "\n  ".join(
            f"{origin}:{line_of(root, loc) or 1}: {_describe(data, loc)}: {message}"
            for loc, message in problems
        )
    )


def _describe(data: Any, loc: tuple[Any, ...]) -> str:
    """``concepts[3] (chest_pain).match`` rather than pydantic's bare tuple."""
    text, node = "", data
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                text += f" ({node['id']})"
        else:
            text += f".{part}" if text else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text or "(top level)"


@functools.cache
def default_detector() -> DangerDetector:
    """The lexicon in use — the hospital's (``SUIFANG_TRIAGE_DIR``) or the shipped one —
    compiled once per process."""
    return DangerDetector.load(triage_file("red_flags.yaml"))


def triage_file(name: str) -> Path | None:
    """The hospital's own copy of a triage data file, if ``SUIFANG_TRIAGE_DIR`` has one."""
    directory = get_settings().triage_dir
    if directory is None:
        return None
    path = directory / name
    return path if path.exists() else None
