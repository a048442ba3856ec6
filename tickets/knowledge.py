"""Routine answers the L1 tier may send on its own: the knowledge base and its retrieval.

Entries live in ``templates/knowledge_base/*.yaml`` (one list of entries per file)::

    - id: wound-showering
      category: wound_care
      owner: nursing              # the department that answers for the text
      reviewed_on: 2026-12-04     # when it was last checked
      review_by: 2027-12-04       # when it must be checked again (`suifang kb list --due`)
      questions:
        zh-CN: [什么时候可以洗澡, 伤口能碰水吗]
        en: [when can I shower, can the wound get wet]
      answer:
        zh-CN: ……
        en: ……

A hospital adapts the wording (visiting hours, parking, phone numbers) by loading its own
directory after the built-in one: an entry with the same ``id`` replaces the built-in entry
(:meth:`KnowledgeBase.load`). A directory may also hold ``examples.csv`` (``entry,language,
question``): more ways patients asked an entry's question, as they really wrote them (the
shipped one holds the tuning corpus's routine questions), used for matching only.

**Retrieval** is BM25 over every entry's example questions, both languages together: Chinese
as character bigrams, English as stemmed content words, after two normalisations that let a
paraphrase meet its entry — synonyms (``templates/triage/synonyms.yaml``: 洗澡 = 淋浴 = 冲凉 =
shower) become one token, and filler (请问, 医生, 吗, please) is dropped. A message's
*confidence* in an entry is its BM25 score over the best score its own words could reach
(every query word present, at the entry's weight), so it is comparable across messages.

:meth:`KnowledgeBase.answer` answers only when the L1 tier can be sure: the message asks
something, the best entry clears :data:`ANSWER_THRESHOLD` and is clearly ahead of the
runner-up. Whether a message may be answered automatically at all — no danger, no symptom,
not a complaint — is the triage policy's decision (:class:`suifang.tickets.triage.Triager`).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from suifang.core.categories import CATEGORY_IDS
from suifang.core.config import get_settings
from suifang.core.errors import ValidationFailed
from suifang.core.triage import KnowledgeAnswer
from suifang.core.yaml_input import read_yaml
from suifang.tickets.danger import normalize, triage_file

__all__ = [
    "ANSWER_THRESHOLD",
    "KnowledgeBase",
    "KnowledgeEntry",
    "builtin_knowledge_dir",
    "default_knowledge_base",
    "load_synonyms",
]

#: Lowest confidence at which an answer is sent without a human. Calibrated by 5-fold
#: cross-validation on the tuning corpus's 790 routine questions (each fold's questions left
#: out of the examples; tests/tickets/corpus, docs/triage.md): at 0.20 with the runner-up rule
#: below, 82.7 % get the right answer (or none when none fits) and 4.4 % a wrong one; at 0.25,
#: 81.4 % and 3.5 %; at 0.15, 85.1 % and 5.8 %.
ANSWER_THRESHOLD = 0.2
#: The runner-up entry must score clearly lower: a near-tie means two answers fit.
_AMBIGUOUS = 0.9
_K1 = 1.2
_B = 0.75
# A word no entry uses counts against a match at half a rare word's weight: a question told
# with a story around it still finds its entry, a story with a known word in it does not.
_UNKNOWN_WEIGHT = 0.5
# A match on a single word of a longer message must be this sure (停车场在哪 is one word).
_ONE_WORD = 0.6

_LOCALES = ("zh-CN", "en")
Locale = Literal["zh-CN", "en"]
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(f"[{_CJK}0]+|[a-z][a-z0-9]*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SLUG = r"^[a-z0-9][a-z0-9_-]*$"
# fmt: off
_ZH_FILLER_WORDS = (
    "请问", "你好", "您好", "医生", "护士", "大夫", "那个", "这个", "一下", "啊", "呀", "吗", "呢",
    "吧", "哦", "嘛", "哈", "的", "了", "我们", "我的", "你们", "我", "您", "你", "他", "她", "是",
    "在", "就", "都", "也", "还", "很", "有点", "一直", "现在", "今天", "昨天", "明天", "想问",
    "问一下", "问下", "麻烦", "谢谢", "咨询", "请教", "那", "这", "哪", "什么", "怎么", "如何",
    "可以", "能", "要", "会", "想", "得", "地", "着", "过", "嗯", "哎", "喂", "吧", "么", "家",
    "怎么办", "咋办", "咋整", "说有",
    "老人", "我爸", "我妈", "老伴", "孩子",
)
_STOPWORDS = frozenset((
    "a", "an", "the", "i", "me", "my", "we", "our", "you", "your", "he", "she", "his", "her",
    "it", "its", "is", "are", "was", "were", "be", "been", "am", "do", "does", "did", "to", "of",
    "in", "on", "at", "for", "with", "and", "or", "so", "if", "can", "could", "should", "would",
    "will", "shall", "may", "might", "have", "has", "had", "what", "when", "where", "which",
    "who", "how", "this", "that", "there", "any", "some", "please", "hi", "hello", "dr",
    "doctor", "nurse", "just", "still", "also", "yet", "get", "got", "about", "after", "before",
    "from", "up", "out", "im", "ive", "id", "dont", "is", "ok", "okay", "thanks", "thank",
    "mum", "mom", "dad", "wife", "husband", "need", "want", "know", "tell", "really", "much",
    "many", "long", "time", "way", "anything", "something", "mine",
))
# fmt: on
_ZH_FILLERS = re.compile(
    "|".join(re.escape(w) for w in sorted(_ZH_FILLER_WORDS, key=len, reverse=True))
)
# A routine answer answers a question; a statement ("伤口流脓了") is for a person to read.
_QUESTION = re.compile(
    r"[?？吗么嘛呢]|怎么|怎样|如何|多久|多长|多少|几|什么|啥|哪|能不能|可不可以|可以|能否|是否"
    r"|要不要|行不行|有没有|是不是|咋|请问|想问|想知道|还是|(?<![a-z])(?:how|when|what|where|which|who"
    r"|why|can|could|should|is it|do i|does|will|may|any tips|any advice|wondering)(?![a-z])"
)


class KnowledgeEntry(BaseModel):
    """One routine question, asked several ways, with its answer in each locale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=_SLUG)]
    category: str
    owner: Annotated[str, StringConstraints(pattern=_SLUG)] = Field(
        description="The department that answers for the text (a department code)."
    )
    reviewed_on: dt.date
    review_by: dt.date
    pathways: list[str] = Field(default_factory=list)
    questions: dict[Locale, list[Annotated[str, StringConstraints(min_length=1)]]]
    answer: dict[Locale, Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]]

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        if value not in CATEGORY_IDS:
            raise ValueError(f"{value!r} is not a category; one of {', '.join(CATEGORY_IDS)}")
        return value

    @field_validator("questions", "answer")
    @classmethod
    def _both_locales(cls, value: dict[str, object]) -> dict[str, object]:
        missing = [locale for locale in _LOCALES if not value.get(locale)]
        if missing:
            raise ValueError(f"needs {', '.join(missing)} as well")
        return value

    @model_validator(mode="after")
    def _review_after_check(self) -> KnowledgeEntry:
        if self.review_by <= self.reviewed_on:
            raise ValueError(
                f"review_by ({self.review_by}) must come after reviewed_on ({self.reviewed_on})"
            )
        return self

    def due_for_review(self, today: dt.date) -> bool:
        return self.review_by <= today


# --------------------------------------------------------------------------- text → terms


class _SynonymSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    groups: list[list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]]]


@dataclass(frozen=True)
class _Analyzer:
    """Text to BM25 terms: synonyms merged, filler dropped, Chinese bigrams, English stems."""

    synonyms: re.Pattern[str] | None
    canonical: Mapping[str, str]

    def terms(self, text: str) -> list[str]:
        normalized = _NUMBER.sub("0", normalize(text))
        terms: list[str] = []
        if self.synonyms is not None:

            def replace(match: re.Match[str]) -> str:
                terms.append("s:" + self.canonical[match.group()])
                return " "

            normalized = self.synonyms.sub(replace, normalized)
        normalized = _ZH_FILLERS.sub(" ", normalized)
        for match in _RUN.finditer(normalized):
            run = match.group()
            if run[0].isascii() and run[0] != "0":
                if run not in _STOPWORDS:
                    terms.append("w:" + _stem(run))
                continue
            if len(run) == 1:
                terms.append(run)
                continue
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
        return terms


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    parts = []
    for word in sorted(set(words), key=len, reverse=True):
        if re.search(f"[{_CJK}]", word):
            parts.append(re.escape(word))
        else:
            parts.append(rf"(?<![a-z]){re.escape(word)}(?:s|es|ed|ing)?(?![a-z])")
    return re.compile("|".join(parts)) if parts else None


def load_synonyms(path: Path | None = None) -> list[list[str]]:
    """The synonym groups (the shipped ``templates/triage/synonyms.yaml`` unless given)."""
    if path is None:
        resource = files("suifang.templates") / "triage" / "synonyms.yaml"
        content, origin = resource.read_text(encoding="utf-8"), "templates/triage/synonyms.yaml"
    else:
        try:
            content, origin = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    try:
        spec = _SynonymSpec.model_validate(read_yaml(content)[1])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark else origin
        raise ValidationFailed(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise ValidationFailed(f"{origin}: {where}: {error['msg']}") from None
    groups = [[normalize(word) for word in group] for group in spec.groups]
    seen: dict[str, int] = {}
    for number, group in enumerate(groups):
        for word in group:
            if word in seen and seen[word] != number:
                raise ValidationFailed(
                    f"{origin}: groups[{number}]: {word!r} is already in groups[{seen[word]}] "
                    "(a word may be in one group only)"
                )
            seen[word] = number
    return groups


def _analyzer(groups: Iterable[list[str]]) -> _Analyzer:
    canonical: dict[str, str] = {}
    for group in groups:
        for word in group:
            canonical.setdefault(word, group[0])
    pattern = _word_pattern(canonical)
    if pattern is None:
        return _Analyzer(None, {})
    # A word found with an English ending (showers) maps back to its group through its stem.
    table = dict(canonical)
    for word, head in canonical.items():
        for suffix in ("s", "es", "ed", "ing"):
            table.setdefault(word + suffix, head)
    return _Analyzer(pattern, table)


# --------------------------------------------------------------------------- the index


@dataclass(frozen=True, slots=True)
class Match:
    entry: KnowledgeEntry
    confidence: float
    matched: int = 0
    """How many of the message's distinct terms the entry has."""
    terms: int = 0
    """How many distinct terms the message has."""


class KnowledgeBase:
    """Entries by id, and BM25 retrieval over their example questions."""

    def __init__(
        self,
        entries: Iterable[KnowledgeEntry],
        synonyms: Iterable[list[str]] = (),
        examples: Mapping[str, list[str]] | None = None,
    ) -> None:
        """``examples``: more example questions by entry id (matching only)."""
        self.entries: Mapping[str, KnowledgeEntry] = {entry.id: entry for entry in entries}
        self._analyzer = _analyzer(synonyms)
        self._ids = list(self.entries)
        extra = examples or {}
        documents = [
            Counter(
                term
                for question in [
                    *(q for locale in _LOCALES for q in self.entries[entry_id].questions[locale]),
                    *extra.get(entry_id, ()),
                ]
                for term in self._analyzer.terms(question)
            )
            for entry_id in self._ids
        ]
        self._lengths = [sum(document.values()) for document in documents]
        self._average = (sum(self._lengths) / len(self._lengths)) if self._lengths else 1.0
        frequency: Counter[str] = Counter()
        for document in documents:
            frequency.update(document.keys())
        total = len(documents)
        self._idf = {
            term: math.log(1 + (total - count + 0.5) / (count + 0.5))
            for term, count in frequency.items()
        }
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for position, document in enumerate(documents):
            for term, count in document.items():
                self._postings.setdefault(term, []).append((position, count))

    @classmethod
    def load(cls, *directories: Path, synonyms: Path | None = None) -> KnowledgeBase:
        """Every ``*.yaml`` in each directory; a later directory's entry replaces an earlier one."""
        entries: dict[str, KnowledgeEntry] = {}
        examples: dict[str, list[str]] = {}
        for directory in directories:
            if not directory.is_dir():
                raise ValidationFailed(f"{directory}: knowledge base directory not found")
            for entry_id, question in _load_examples(directory / "examples.csv"):
                examples.setdefault(entry_id, []).append(question)
            seen_here: dict[str, Path] = {}
            for path in sorted(directory.glob("*.yaml")):
                for entry in _load_file(path):
                    if entry.id in seen_here:
                        earlier = seen_here[entry.id].name
                        raise ValidationFailed(
                            f"{path}: entry id {entry.id!r} is already used in {earlier}"
                        )
                    seen_here[entry.id] = path
                    entries[entry.id] = entry
        unknown = sorted(set(examples) - set(entries))
        if unknown:
            raise ValidationFailed(
                f"examples.csv: no knowledge-base entry {unknown[0]!r} "
                f"({len(unknown)} unknown entr{'y' if len(unknown) == 1 else 'ies'})"
            )
        return cls(entries.values(), load_synonyms(synonyms), examples)

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(entry.category for entry in self.entries.values())

    def ranked(self, text: str, limit: int = 5) -> list[Match]:
        """The best entries for ``text``, by confidence (0–1), best first."""
        query = Counter(self._analyzer.terms(text))
        if not query:
            return []
        scores: dict[int, float] = {}
        ceiling = 0.0
        for term, count in query.items():
            idf = self._idf.get(term)
            if idf is None:
                # A word no entry has still counts against every match, like a rare word.
                rare = math.log(1 + (len(self._ids) + 0.5) / 0.5)
                ceiling += _UNKNOWN_WEIGHT * count * rare * (_K1 + 1)
                continue
            ceiling += count * idf * (_K1 + 1)
            for position, frequency in self._postings[term]:
                norm = _K1 * (1 - _B + _B * self._lengths[position] / self._average)
                scores[position] = scores.get(position, 0.0) + count * idf * (
                    frequency * (_K1 + 1) / (frequency + norm)
                )
        ranked = sorted(scores.items(), key=lambda item: (-item[1], self._ids[item[0]]))
        return [
            Match(
                self.entries[self._ids[position]],
                round(min(1.0, score / ceiling), 4),
                sum(
                    1
                    for term in query
                    if any(p == position for p, _ in self._postings.get(term, ()))
                ),
                len(query),
            )
            for position, score in ranked[:limit]
        ]

    def answer(
        self, text: str, language: str, *, threshold: float = ANSWER_THRESHOLD
    ) -> KnowledgeAnswer | None:
        """The routine answer for ``text`` in ``language``, or None when unsure."""
        if not _QUESTION.search(normalize(text)):
            return None
        ranked = self.ranked(text, limit=2)
        if not ranked or ranked[0].confidence < threshold:
            return None
        best = ranked[0]
        if len(ranked) > 1 and ranked[1].confidence > _AMBIGUOUS * best.confidence:
            return None  # two answers fit about equally: a person should pick
        if best.matched < min(2, best.terms) and best.confidence < _ONE_WORD:
            return None  # one shared word ("tomorrow") is not a topic
        locale: Locale = "en" if language.lower().startswith("en") else "zh-CN"
        return KnowledgeAnswer(
            id=best.entry.id,
            question=best.entry.questions[locale][0],
            answer=best.entry.answer[locale],
            confidence=best.confidence,
        )

    def due_for_review(self, today: dt.date) -> list[KnowledgeEntry]:
        return sorted(
            (e for e in self.entries.values() if e.due_for_review(today)),
            key=lambda e: (e.review_by, e.id),
        )


def _load_file(path: Path) -> list[KnowledgeEntry]:
    try:
        _, data = read_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ValidationFailed(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValidationFailed(f"{path}: a knowledge base file is a list of entries")
    entries = []
    for index, item in enumerate(data):
        label = item.get("id") if isinstance(item, dict) else None
        where = f"{path}: entry {index + 1}" + (f" ({label})" if isinstance(label, str) else "")
        try:
            entries.append(KnowledgeEntry.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '(entry)'}: "
                f"{error['msg'].removeprefix('Value error, ')}"
                for error in exc.errors()
            )
            raise ValidationFailed(f"{where}: {problems}") from None
    return entries


def _load_examples(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    try:
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    if reader.fieldnames != ["entry", "language", "question"]:
        raise ValidationFailed(f"{path}:1: the header must be entry,language,question")
    rows = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row or any(value is None for value in row.values()):
            raise ValidationFailed(f"{where}: expected 3 columns (entry,language,question)")
        if row["language"] not in _LOCALES:
            raise ValidationFailed(f"{where}: language {row['language']!r} is not zh-CN or en")
        if not row["question"].strip():
            raise ValidationFailed(f"{where}: the question is empty")
        rows.append((row["entry"], row["question"]))
    return rows


def builtin_knowledge_dir() -> Path:
    with as_file(files("suifang.templates") / "knowledge_base") as path:
        return Path(path)


@functools.cache
def default_knowledge_base() -> KnowledgeBase:
    """The knowledge base in use: the shipped entries, then the hospital's own
    (``SUIFANG_KNOWLEDGE_DIR``), with the synonyms in use; loaded once per process."""
    directories = [builtin_knowledge_dir()]
    own = get_settings().knowledge_dir
    if own is not None:
        directories.append(own)
    return KnowledgeBase.load(*directories, synonyms=triage_file("synonyms.yaml"))
