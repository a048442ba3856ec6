"""Routine answers the L1 tier may send on its own: the knowledge base and its matcher.

Entries live in ``templates/knowledge_base/*.yaml`` (one list of entries per file)::

    - id: wound-showering
      category: wound_care
      questions:
        zh-CN: [什么时候可以洗澡, 伤口能碰水吗]
        en: [when can I shower, can the wound get wet]
      answer:
        zh-CN: ……
        en: ……

A hospital adapts the wording (visiting hours, parking, phone numbers) by loading its own
directory after the built-in one: an entry with the same ``id`` replaces the built-in entry
(:meth:`KnowledgeBase.load`).

A message is matched against the example questions of the entries in its predicted category,
by TF-IDF cosine similarity over character 1- and 2-grams (Chinese, filler words such as 请问
and 吗 removed) and stemmed content words (English); each drug name counts as one word of its
kind. :func:`answer` returns an answer only when the L1 tier can be sure of it:

- the message asks something (a statement such as "伤口流脓了" is for a person to read);
- the best entry scores at least :data:`ANSWER_THRESHOLD`, clearly ahead of the runner-up,
  and no entry of another category matches clearly better;
- any symptom the message describes is one the entry is about (the bruising entry answers
  "穿刺的地方青了一大片，正常吗"; nothing answers "伤口有点红，正常吗").

Similarity alone says *which* entry, not *whether* to answer: a symptom report on a known
topic can score as high as the question itself, hence the other two rules. Whether a
message may be answered automatically at all (no red flag, routine, a patient's own
message) is the triage policy's job (:class:`suifang.tickets.triage.Triager`), which calls
this module last.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator

from suifang.core.errors import ValidationFailed
from suifang.core.triage import KnowledgeAnswer

__all__ = [
    "ANSWER_THRESHOLD",
    "KnowledgeBase",
    "KnowledgeEntry",
    "answer",
    "builtin_knowledge_dir",
    "default_knowledge_base",
]

#: Lowest similarity at which an answer is sent without a human. On 40 paraphrases written
#: for the tests (not in the knowledge base), right entries scored 0.23-1.0 (median 0.52) and
#: small-talk such as "我儿子什么时候放假" at most 0.32; 0.35 answers 33 of the 40.
ANSWER_THRESHOLD = 0.35
# The runner-up must score clearly lower: on the same paraphrases the right answers had
# runner-ups at most 0.85 of the winner, the wrong ones seen were near-ties (0.96-1.0).
_AMBIGUOUS = 0.9
# An entry of another category may not match clearly better than the predicted category's
# best: on the held-out messages this removed one wrong answer and no right one.
_ELSEWHERE = 1.25

_LOCALES = ("zh-CN", "en")
Locale = Literal["zh-CN", "en"]
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(f"[{_CJK}0]+|[a-z][a-z']*")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# fmt: off
# Chinese words that say nothing about which topic a question is on.
_ZH_FILLER_WORDS = (
    "请问", "你好", "您好", "医生", "护士", "大夫", "那个", "这个", "一下", "啊", "呀", "吗", "呢",
    "吧", "哦", "嘛", "哈", "的", "了", "我们", "我的", "你们", "我", "您", "什么时候", "什么",
    "怎么样", "怎么", "怎样", "如何", "可以", "能不能", "能否", "是不是", "有没有", "要不要",
    "今天", "昨天", "明天", "现在", "一直", "还", "就", "都", "也", "很", "有点", "是", "在",
)
# English words that say nothing about which topic a question is on.
_STOPWORDS = frozenset((
    "a", "an", "the", "i", "me", "my", "we", "our", "you", "your", "he", "she", "his", "her",
    "it", "its", "is", "are", "was", "were", "be", "been", "am", "do", "does", "did", "to", "of",
    "in", "on", "at", "for", "with", "and", "or", "so", "if", "can", "could", "should", "would",
    "will", "shall", "may", "might", "have", "has", "had", "what", "when", "where", "which",
    "who", "how", "this", "that", "there", "any", "some", "please", "hi", "hello", "dr",
    "doctor", "nurse", "just", "still", "also", "yet", "get", "got", "about", "after", "before",
    "from", "up", "out",
))
# Words that describe a symptom. A message with one is answered only by an entry whose own
# questions name it ("穿刺的地方青了一大片" → the bruising entry); "伤口有点红，正常吗" is for
# a nurse, however close it is to the showering question.
_SYMPTOM_WORDS = (
    "疼", "痛", "肿", "发红", "红肿", "有点红", "变红", "红了", "红红", "发烫", "烫", "痒", "出血",
    "流血", "渗", "脓", "发麻", "麻木", "手麻", "脚麻", "晕", "发烧", "发热", "咳", "喘", "胸闷",
    "发闷", "心慌", "呕吐", "吐了", "想吐", "拉肚子", "腹泻", "便秘", "乏力", "没力气", "淤青",
    "青紫", "发青", "青了", "发紫", "疹", "黑便", "抽筋", "酸痛", "发酸", "酸胀", "不舒服", "难受",
    "pain", "painful", "hurt", "hurts", "hurting", "sore", "swollen", "swelling", "red",
    "redness", "hot", "bleeding", "bleeds", "oozing", "ooze", "pus", "numb", "dizzy", "faint",
    "fever", "cough", "coughing", "breathless", "nausea", "sick", "vomit", "vomiting",
    "diarrhoea", "diarrhea", "rash", "itchy", "itch", "itching", "bruise", "bruised",
    "bruising", "cramp", "cramps", "ache", "aching", "tired", "weak",
)
# Names of one kind of medicine count as one word: otherwise a long drug name (替格瑞洛 is
# seven character n-grams) outweighs what the question is about (忘了吃).
_CONCEPT_NAMES = {
    "antiplatelet": (
        "氯吡格雷", "波立维", "泰嘉", "替格瑞洛", "倍林达", "双抗", "抗血小板药", "抗血小板的药",
        "clopidogrel", "plavix", "ticagrelor", "brilinta", "antiplatelets", "antiplatelet",
        "blood thinners", "blood thinner",
    ),
    "statin": (
        "阿托伐他汀", "瑞舒伐他汀", "辛伐他汀", "他汀类", "他汀", "立普妥", "atorvastatin",
        "rosuvastatin", "simvastatin", "statins", "statin", "lipitor",
    ),
    "nitrate": ("硝酸甘油", "nitroglycerine", "nitroglycerin", "gtn", "nitro"),
    "blood_pressure_medicine": (
        "降压药", "降血压的药", "antihypertensives", "bp pills", "bp tablets",
    ),
}
# fmt: on


def _words_pattern(words: Iterable[str]) -> str:
    """One alternation, longest first; English words only as whole words."""
    return "|".join(
        re.escape(word) if _CJK_CHAR.match(word) else rf"(?<![a-z]){re.escape(word)}(?![a-z])"
        for word in sorted(words, key=len, reverse=True)
    )


_ZH_FILLERS = re.compile(_words_pattern(_ZH_FILLER_WORDS))
_SYMPTOM = re.compile(_words_pattern(_SYMPTOM_WORDS))
_CONCEPTS = {
    concept: re.compile(_words_pattern(names)) for concept, names in _CONCEPT_NAMES.items()
}
# A routine answer answers a question; a statement ("伤口流脓了") is for a human to read.
_QUESTION = re.compile(
    r"[?？吗么嘛呢]|怎么|怎样|如何|多久|多长|多少|几|什么|啥|哪|能不能|可不可以|可以|能否|是否"
    r"|要不要|行不行|有没有|是不是|(?<![a-z])(?:how|when|what|where|which|who|can|could|should"
    r"|is it|do i|does|will|may|any tips|any advice)(?![a-z])"
)
_SLUG = r"^[a-z0-9][a-z0-9_-]*$"


class KnowledgeEntry(BaseModel):
    """One routine question, asked several ways, with its answer in each locale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=_SLUG)]
    category: Annotated[str, StringConstraints(pattern=_SLUG)]
    questions: dict[Locale, list[Annotated[str, StringConstraints(min_length=1)]]]
    answer: dict[Locale, Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]]

    @field_validator("questions", "answer")
    @classmethod
    def _both_locales(cls, value: dict[str, object]) -> dict[str, object]:
        missing = [locale for locale in _LOCALES if not value.get(locale)]
        if missing:
            raise ValueError(f"needs {', '.join(missing)} as well")
        return value


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _features(text: str) -> Counter[str]:
    normalized = _NUMBER.sub("0", _normalize(text))
    features: Counter[str] = Counter()
    for concept, pattern in _CONCEPTS.items():
        normalized, found = pattern.subn(" ", normalized)
        if found:
            features["c:" + concept] += found
    normalized = _ZH_FILLERS.sub(" ", normalized)
    words: list[str] = []
    for match in _RUN.finditer(normalized):
        run = match.group()
        if run[0].isascii() and run[0] != "0":
            word = run.replace("'", "")
            if word not in _STOPWORDS:
                words.append(_stem(word))
            continue
        for size in (1, 2):
            for start in range(len(run) - size + 1):
                features[run[start : start + size]] += 1
    for word in words:
        features["w:" + word] += 1
    return features


@dataclass(frozen=True, slots=True)
class _Index:
    """Every example question as an inverted index: feature → (example, weight)."""

    entries: tuple[KnowledgeEntry, ...]
    postings: dict[str, list[tuple[int, float]]]


class KnowledgeBase:
    """Entries by id, and a matcher over their example questions."""

    def __init__(self, entries: Iterable[KnowledgeEntry]) -> None:
        self.entries: Mapping[str, KnowledgeEntry] = {entry.id: entry for entry in entries}
        examples = [
            (entry, question, _features(question))
            for entry in self.entries.values()
            for locale in _LOCALES
            for question in entry.questions[locale]
        ]
        document_frequency: Counter[str] = Counter()
        for _, _, features in examples:
            document_frequency.update(features.keys())
        total = len(examples) or 1
        self._idf = {
            feature: math.log((1 + total) / (1 + count)) + 1
            for feature, count in document_frequency.items()
        }
        # A word no example has counts against a match like a typical word: a question
        # wrapped in a story about symptoms matches less well than the bare question.
        weights = sorted(self._idf.values())
        self._unknown_idf = weights[len(weights) // 2] if weights else 1.0
        postings: dict[str, list[tuple[int, float]]] = {}
        for position, (_, _, features) in enumerate(examples):
            for feature, weight in self._vector(features).items():
                postings.setdefault(feature, []).append((position, weight))
        self._index = _Index(tuple(entry for entry, _, _ in examples), postings)
        self._symptoms_covered = {
            entry.id: frozenset(
                symptom
                for locale in _LOCALES
                for question in entry.questions[locale]
                for symptom in _SYMPTOM.findall(_normalize(question))
            )
            for entry in self.entries.values()
        }

    @classmethod
    def load(cls, *directories: Path) -> KnowledgeBase:
        """Every ``*.yaml`` in each directory; a later directory's entry replaces an earlier one."""
        entries: dict[str, KnowledgeEntry] = {}
        for directory in directories:
            if not directory.is_dir():
                raise ValidationFailed(f"{directory}: knowledge base directory not found")
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
        return cls(entries.values())

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(entry.category for entry in self.entries.values())

    def _vector(self, features: Counter[str]) -> dict[str, float]:
        weights = {
            feature: (1 + math.log(count)) * self._idf.get(feature, self._unknown_idf)
            for feature, count in features.items()
        }
        norm = math.sqrt(sum(weight * weight for weight in weights.values())) or 1.0
        return {feature: weight / norm for feature, weight in weights.items()}

    def ranked(self, text: str, category: str | None = None) -> list[tuple[KnowledgeEntry, float]]:
        """Entries (of ``category``, if given) by similarity (0–1) to ``text``, best first."""
        features = _features(text)
        if not features:
            return []
        index = self._index
        scores = [0.0] * len(index.entries)
        for feature, weight in self._vector(features).items():
            for position, example_weight in index.postings.get(feature, ()):
                scores[position] += weight * example_weight
        best: dict[str, tuple[KnowledgeEntry, float]] = {}
        for entry, score in zip(index.entries, scores, strict=True):
            if category is not None and entry.category != category:
                continue
            if entry.id not in best or score > best[entry.id][1]:
                best[entry.id] = (entry, score)
        return sorted(best.values(), key=lambda pair: (-pair[1], pair[0].id))

    def answer(
        self, text: str, language: str, category: str, *, threshold: float = ANSWER_THRESHOLD
    ) -> KnowledgeAnswer | None:
        """The routine answer for ``text`` in ``language``, or None below ``threshold``."""
        normalized = _normalize(text)
        if not _QUESTION.search(normalized):
            return None
        ranked = self.ranked(text)
        candidates = [(entry, score) for entry, score in ranked if entry.category == category]
        if not candidates or candidates[0][1] < threshold:
            return None
        entry, score = candidates[0]
        if len(candidates) > 1 and candidates[1][1] > _AMBIGUOUS * score:
            return None  # two answers fit about equally: a person should pick
        elsewhere = next((other for e, other in ranked if e.category != category), 0.0)
        if elsewhere > _ELSEWHERE * score:
            return None  # the text reads as another kind of question than the model thinks
        if not set(_SYMPTOM.findall(normalized)) <= self._symptoms_covered[entry.id]:
            return None
        locale: Locale = "en" if language.lower().startswith("en") else "zh-CN"
        return KnowledgeAnswer(
            id=entry.id,
            question=entry.questions[locale][0],
            answer=entry.answer[locale],
            confidence=round(min(1.0, score), 4),
        )


def _load_file(path: Path) -> list[KnowledgeEntry]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
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


def builtin_knowledge_dir() -> Path:
    with as_file(files("suifang.templates") / "knowledge_base") as path:
        return Path(path)


@functools.cache
def default_knowledge_base() -> KnowledgeBase:
    """The shipped knowledge base, loaded once per process."""
    return KnowledgeBase.load(builtin_knowledge_dir())


def answer(text: str, language: str, category: str) -> KnowledgeAnswer | None:
    """The shipped knowledge base's confident answer to ``text``, or None.

    Never an answer when the text has a red flag, whoever calls. Whether the message is
    routine and the patient's own is :func:`suifang.tickets.triage.classify`'s to judge.
    """
    # Imported here: the triage module builds on this one, not the other way round.
    from suifang.tickets.triage import default_lexicon

    if default_lexicon().red_flag_ids(text):
        return None
    return default_knowledge_base().answer(text, language, category)
