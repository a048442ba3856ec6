"""What a patient wants: a question, a complaint, a suggestion, or thanks — and whose conduct.

The cues are data (``templates/triage/intents.yaml``); :class:`IntentReader` counts them in a
message, normalised as the danger lexicon normalises it. The triage policy decides with them:
a complaint is never closed by an automatic answer, thanks alone is acknowledged instead of
opened as a ticket, only a question may be answered from the knowledge base, and a complaint
about a doctor goes to medical affairs, about a nurse to nursing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib.resources import files
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
)

from suifang.core.categories import CATEGORY_IDS
from suifang.core.errors import ValidationFailed
from suifang.core.yaml_input import read_yaml
from suifang.tickets.danger import compile_phrases, normalize, triage_file

__all__ = ["IntentReader", "IntentSignals", "default_intent_reader"]

Intent = Literal["complaint", "difficulty", "request", "suggestion", "praise", "question"]
_Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


class _Cues(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    zh_cn: list[_Phrase] = Field(default_factory=list, alias="zh-CN")
    en: list[_Phrase] = Field(default_factory=list)


class _Role(_Cues):
    category: str

    def model_post_init(self, __context: object) -> None:
        if self.category not in CATEGORY_IDS:
            raise ValueError(f"category {self.category!r} is not one of {', '.join(CATEGORY_IDS)}")


class _Topic(_Cues):
    """Words that say which service a message is about (the lift, the bill, the canteen)."""


class IntentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    intents: dict[Intent, _Cues]
    topics: dict[str, _Topic] = Field(default_factory=dict)
    """By category id: the service a complaint, suggestion or question is about."""
    not_cues: _Cues = Field(default_factory=_Cues)
    """Words that contain a cue but are not one (心脏 holds 脏); blanked before counting."""
    conduct: _Cues = Field(default_factory=_Cues)
    """Words about how someone behaved (rude, didn't explain, 态度): a complaint naming staff
    with one of them is about that person."""
    nothing_to_report: _Cues = Field(default_factory=_Cues)
    """Whole replies that say there is nothing to report: 没有, 还好, 无, ok, none."""

    @field_validator("topics")
    @classmethod
    def _known_categories(cls, value: dict[str, _Topic]) -> dict[str, _Topic]:
        unknown = sorted(set(value) - set(CATEGORY_IDS))
        if unknown:
            raise ValueError(f"unknown categories {unknown}: use one of {', '.join(CATEGORY_IDS)}")
        return value

    staff_roles: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$")], _Role] = Field(
        default_factory=dict
    )


@dataclass(frozen=True, slots=True)
class IntentSignals:
    """How many cues of each intent a message has, and the staff it names."""

    complaint: int
    suggestion: int
    praise: int
    question: int
    roles: tuple[str, ...]
    """Categories of the staff named, in the order written (doctor_conduct, nursing_care, …)."""
    says_nothing: bool = False
    """The whole message only says there is nothing to report ("没有", "还好", "ok")."""
    difficulty: int = 0
    """Words of trouble or inconvenience (看不懂, 不方便): a complaint only when nothing is
    asked."""
    request: int = 0
    """Asking the hospital to do something (能不能…, could you…): a suggestion unless the
    knowledge base answers it."""
    topics: tuple[str, ...] = ()
    """Service categories the message names (billing, environment…): specific services
    before general ones (facilities, waiting, appointments), then the most named, then the
    order of ``intents.yaml``."""
    conduct: bool = False
    """Whether it says how someone behaved (rude, didn't explain, 态度)."""

    @property
    def asks(self) -> bool:
        return self.question > 0 or self._question_mark

    @property
    def grievances(self) -> int:
        """Complaint cues, and words of trouble when the message asks nothing."""
        return self.complaint + (0 if self.asks else self.difficulty)

    _question_mark: bool = False


class IntentReader:
    def __init__(self, spec: IntentSpec) -> None:
        self.spec = spec
        self._intents = {
            name: compile_phrases([*cues.zh_cn, *cues.en]) for name, cues in spec.intents.items()
        }
        nil = spec.nothing_to_report
        self._nothing = compile_phrases([*nil.zh_cn, *nil.en]) if nil.zh_cn or nil.en else None
        self._conduct = compile_phrases([*spec.conduct.zh_cn, *spec.conduct.en])
        not_cues = [*spec.not_cues.zh_cn, *spec.not_cues.en]
        self._not_cues = compile_phrases(not_cues) if not_cues else None
        self._contrast = compile_phrases(_CONTRAST)
        # One matcher over every topic's words, longest first: 停车场收费 is parking, not
        # parking and billing.
        self._topic_order = {category: order for order, category in enumerate(spec.topics)}
        self._topic_of: dict[str, str] = {}
        for category, cues in spec.topics.items():
            for phrase in (*cues.zh_cn, *cues.en):
                self._topic_of.setdefault(normalize(phrase), category)
        self._topics = compile_phrases(self._topic_of) if self._topic_of else None
        self._roles = [
            (role.category, compile_phrases([*role.zh_cn, *role.en]))
            for role in spec.staff_roles.values()
        ]

    @classmethod
    def load(cls, path: Path | None = None) -> IntentReader:
        if path is None:
            resource = files("suifang.templates") / "triage" / "intents.yaml"
            content, origin = resource.read_text(encoding="utf-8"), "templates/triage/intents.yaml"
        else:
            try:
                content, origin = path.read_text(encoding="utf-8"), str(path)
            except (OSError, UnicodeDecodeError) as exc:
                raise ValidationFailed(f"{path}: cannot read: {exc}") from None
        try:
            _, data = read_yaml(content)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{origin}:{mark.line + 1}" if mark else origin
            raise ValidationFailed(
                f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"
            ) from None
        try:
            return cls(IntentSpec.model_validate(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: "
                f"{error['msg'].removeprefix('Value error, ')}"
                for error in exc.errors()
            )
            raise ValidationFailed(f"{origin}: invalid intents: {problems}") from None

    def read(self, text: str) -> IntentSignals:
        normalized = normalize(text)
        if self._not_cues is not None:
            normalized = self._not_cues.sub(lambda m: " " * len(m.group()), normalized)
        counts = dict.fromkeys(("complaint", "difficulty", "request", "suggestion", "praise"), 0)
        complaining: list[int] = []
        praising: list[int] = []
        # A praise word inside a complaint's or a suggestion's own phrase is not thanks:
        # "thanks for nothing", "it'd be nice to have…".
        worded: list[tuple[int, int]] = []
        for name in counts:
            pattern = self._intents.get(name)
            for match in pattern.finditer(normalized) if pattern else ():
                if name == "praise" and any(
                    start <= match.start() and match.end() <= end for start, end in worded
                ):
                    continue
                if not _negated(normalized, match.start(), match.end()):
                    counts[name] += 1
                    if name in ("complaint", "suggestion"):
                        worded.append(match.span())
                    if name == "complaint":
                        complaining.append(match.start())
                    elif name == "praise":
                        praising.append(match.end())
                    elif name == "difficulty" and _EXCLAIMED.match(normalized, match.end()):
                        # 太麻烦了吧, 也太折腾了啊: an exclamation, a complaint even when
                        # the message asks something.
                        counts["complaint"] += 1
                        complaining.append(match.start())
                elif name == "praise":
                    counts["complaint"] += 1  # 一点耐心都没有, not helpful: praise denied
                    complaining.append(match.start())
        # "Thanks to the doctor, but the bill…": what a complaint is about follows its "but".
        about = normalized
        turn = next(
            (
                m.end()
                for m in self._contrast.finditer(normalized)
                if any(position >= m.end() for position in complaining)
            ),
            None,
        )
        if turn is None and praising:
            # "The nurses were lovely, but the surgeon never explained": praise, then a
            # "but" that turns to a person or a service, is a complaint about what follows
            # (unless it turns to a question: "谢谢医生，就是想问下医保怎么报销").
            turn = next(
                (
                    m.end()
                    for m in self._contrast.finditer(normalized)
                    if m.start() >= praising[0]
                    and self._names_someone(tail := normalized[m.end() :])
                    and not (self._questions(tail) or "?" in tail)
                ),
                None,
            )
            if turn is not None:
                counts["complaint"] += 1
        if turn is not None and counts["praise"]:
            about = normalized[turn:]
        named: dict[str, int] = {}
        for match in self._topics.finditer(about) if self._topics is not None else ():
            category = self._topic_of.get(_stem(match.group(), self._topic_of))
            if category is not None:
                named[category] = named.get(category, 0) + 1
        topics = tuple(
            sorted(
                named,
                key=lambda c: (c in _GENERAL_TOPICS, -named[c], self._topic_order[c]),
            )
        )
        found: list[tuple[int, str]] = []
        for category, pattern in self._roles:
            match = pattern.search(about)
            if match:
                found.append((match.start(), category))
        roles = tuple(dict.fromkeys(category for _, category in sorted(found)))
        return IntentSignals(
            complaint=counts.get("complaint", 0),
            suggestion=counts.get("suggestion", 0),
            difficulty=counts.get("difficulty", 0),
            request=counts.get("request", 0),
            praise=counts.get("praise", 0),
            question=self._questions(normalized),
            roles=roles,
            says_nothing=self._says_nothing(normalized),
            topics=topics,
            conduct=bool(self._conduct.search(normalized)),
            _question_mark="?" in normalized,
        )

    def _names_someone(self, text: str) -> bool:
        """Whether ``text`` names a member of staff, a service, or how someone behaved."""
        return bool(
            self._conduct.search(text)
            or (self._topics is not None and self._topics.search(text))
            or any(pattern.search(text) for _, pattern in self._roles)
        )

    def _says_nothing(self, text: str) -> bool:
        if self._nothing is None or not self._nothing.search(text):
            return False
        return not _FILLER.sub("", self._nothing.sub("", text))

    def _questions(self, text: str) -> int:
        """Question cues that really ask: a Chinese particle that ends its clause (好吗, not
        吃嘛嘛香), an interrogative not negated (什么时候, not 没什么), an English question word
        that opens its clause (when can I…, not "the nurse who taught me")."""
        pattern = self._intents.get("question")
        if pattern is None:
            return 0
        count = 0
        for match in pattern.finditer(text):
            word, start, end = match.group(), match.start(), match.end()
            if word in _PARTICLES:
                if _CLAUSE_END.match(text, end):
                    count += 1
                continue
            if _HAS_CJK.search(word):
                before = text[max(0, start - 1) : start]
                if before in ("没", "不") or (word.startswith("几") and before in _FEW):
                    continue
                if word in ("啥", "什么") and text[end : end + 1] in ("都", "也"):
                    continue  # 啥都中, 什么都能吃: everything, not "what?"
                if _TELLS.search(text[max(0, start - 5) : start]):
                    continue  # 教我怎么打针, 讲了什么时候吃: told how, not asking
                count += 1
                continue
            opening = _CLAUSE_START.search(text[:start])
            if opening is not None and not self._statement(word, text, end):
                count += 1
        return count

    @staticmethod
    def _statement(word: str, text: str, end: int) -> bool:
        """An auxiliary that opens a clause and goes straight on to an adverb or a verb says,
        not asks: "will def come back next year", "would highly recommend". A noun after it
        is its subject (should metformin be taken…, can grandma take…): a question."""
        if word not in _AUXILIARIES:
            return False
        if word == "did" and _DONE_IT.match(text, end):
            return True  # "did it and all normal now": done, not "did it hurt?"
        following = _NEXT_WORD.match(text, end)
        return following is not None and following.group(1) in _PREDICATES


_PARTICLES = frozenset("吗么嘛呢不")
_AUXILIARIES = frozenset(
    {"are", "is", "can", "could", "do", "did", "should", "will", "would", "have", "has", "am"}
)
# What follows an auxiliary that tells rather than asks: an adverb or a verb (will def come
# back, would highly recommend, can honestly say).
_PREDICATES = frozenset(
    {
        "def", "defo", "deffo", "definitely", "certainly", "surely", "never", "always",
        "really", "truly", "honestly", "highly", "totally", "absolutely", "gladly", "happily",
        "so", "be", "come", "recommend", "miss", "not", "forever", "still", "now", "also",
        "probably", "just",
    }
)  # fmt: skip
_NEXT_WORD = re.compile(r"\s+([a-z']+)")
_DONE_IT = re.compile(r"\s+(?:it|that|this)\s*(?:$|[,.;!~)]|and\b|:\))")
_EXCLAIMED = re.compile(r"了(?:吧|啊|呀)|了?[!！]")
# Topics a message names in passing while it is about something more specific ("waited an
# hour at the car park" is about parking): ranked after the specific ones.
_GENERAL_TOPICS = frozenset({"environment", "waiting_time", "appointment", "other"})
# 那几天, 好几次, 前几天: "a few", not "how many".
_FEW = frozenset("那这前好没头后的")
_TELLS = re.compile(
    r"(?:教|讲|告诉|解释|说明|知道|明白|学会|演示|搞懂|弄懂|懂了)[^，。,.!?！？]{0,3}$"
)
_CONTRAST = (
    "但是", "但", "可是", "不过", "就是", "只是", "然而", "倒是", "反倒",
    "顺便说一句", "顺便说一下", "顺便提一句", "顺便提一下",
    "but", "however", "though", "on the other hand", "other than that", "except", "by the way",
    "btw",
)  # fmt: skip
# What a "nothing to report" reply may have around its words: punctuation, particles, emoji.
_FILLER = re.compile(r"[\W_啊呀哦噢嗯呢的了吧哈啦]+", re.UNICODE)
_CLAUSE_END = re.compile(r"\s*(?:[,，。.!！?？~～;；…]|$|了|啊|呀|哈)|\s+(?=[\u4e00-\u9fff])")
_HAS_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")
# What may come before an English question word in its clause: nothing, or a greeting.
_CLAUSE_START = re.compile(
    r"(?:^|[,.;:!?，。！？；\n]\s*)(?:(?:hi|hello|hey|dear|doctor|nurse|dr|sorry|please|um|"
    r"ok|so|and|also|but|quick question)\b[\s,]*)*$"
)


_DENIED_BEFORE = re.compile(
    r"(?:没有|没|不|一点也不|一点都不|毫不|从不|从来不|并不|不太|不怎么|不够|wasnt|werent|isnt|arent"
    r"|not|never|no|without|hardly|nt)\s*"
    r"(?:very|so|too|really|at all|that|getting|being|having|太|很|够|那么|算|是)?\s*$"
)
_DENIED_AFTER = re.compile(r"^\s*(?:都没有|都没|也没有|也没|都不|也不|一点都没有|都欠缺)")


def _stem(word: str, known: dict[str, str]) -> str:
    """``word`` as the phrase it matched (English words match with -s/-ed/-ing too)."""
    if word in known:
        return word
    for suffix in ("ing", "ed", "es", "s", "d"):
        if word.endswith(suffix) and word[: -len(suffix)] in known:
            return word[: -len(suffix)]
    return word


def _negated(text: str, start: int, end: int) -> bool:
    """Whether a cue is denied: 一点耐心都没有, not helpful, without getting annoyed."""
    return bool(
        _DENIED_BEFORE.search(text[max(0, start - 16) : start])
        or _DENIED_AFTER.match(text[end : end + 8])
    )


@functools.cache
def default_intent_reader() -> IntentReader:
    """The intent cues in use (the hospital's ``SUIFANG_TRIAGE_DIR/intents.yaml`` or shipped)."""
    return IntentReader.load(triage_file("intents.yaml"))
