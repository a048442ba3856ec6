"""Patient-facing text: jinja2 rendering of pathway messages, questionnaires and reminders.

Every message addresses the patient by name (politely, the way a nurse would: 王阿姨,
张先生, Mrs Wang) and names the department that cares for them.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from suifang.core.pathways import LocalizedText, Question, Questionnaire

if TYPE_CHECKING:
    from suifang.core.models import Department, Patient

__all__ = [
    "MessageContext",
    "MessageRenderer",
    "RenderedMessage",
    "address_patient",
    "patient_context",
]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_COMPOUND_SURNAMES = (
    "欧阳",
    "司马",
    "诸葛",
    "上官",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "司徒",
)


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _age(birth_date: dt.date | None, today: dt.date) -> int | None:
    if birth_date is None:
        return None
    return (
        today.year
        - birth_date.year
        - ((today.month, today.day) < (birth_date.month, birth_date.day))
    )


def address_patient(
    name: str, *, sex: str | None, birth_date: dt.date | None, locale: str, today: dt.date
) -> str:
    """How a nurse would address this patient: 王阿姨 / 张先生 / Mrs Wang / the full name."""
    name = name.strip()
    age = _age(birth_date, today)
    if age is not None and age < 18:
        return name  # a child: messages address the parent and name the child in full
    female, male = sex in ("female", "f", "女"), sex in ("male", "m", "男")
    if locale != "en" and _is_cjk(name) and 2 <= len(name) <= 4:
        surname = name[:2] if name.startswith(_COMPOUND_SURNAMES) else name[:1]
        if age is not None and age >= 60 and (female or male):
            return surname + ("阿姨" if female else "叔叔")
        if female:
            return surname + "女士"
        if male:
            return surname + "先生"
        return name
    if locale == "en" and (female or male):
        surname = name.split()[-1] if not _is_cjk(name) else name[:1]
        return ("Ms " if female else "Mr ") + surname
    return name


@dataclass(frozen=True)
class MessageContext:
    name: str
    department: str
    hospital: str = ""
    day: int | None = None
    points: int = 0
    finding: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "department": self.department,
            "hospital": self.hospital,
            "day": self.day,
            "points": self.points,
            "finding": self.finding,
        }


def patient_context(
    patient: Patient, department: Department | None, *, hospital: str, today: dt.date
) -> MessageContext:
    """The context of a message to ``patient`` outside a journey (ticket notices, thanks).

    ``today`` is the caller's: a Temporal activity and a route read the clock differently.
    """
    locale = patient.locale
    return MessageContext(
        name=address_patient(
            patient.name,
            sex=patient.sex,
            birth_date=patient.birth_date,
            locale=locale,
            today=today,
        ),
        department=(department.name_en if locale == "en" else department.name_zh)
        if department
        else "",
        hospital=hospital,
    )


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    body: str


class MessageRenderer:
    """Renders pathway texts (strings from YAML) and the shared message templates (files)."""

    def __init__(self, templates: Path = TEMPLATES) -> None:
        # Plain text for SMS, WeChat and voice scripts; nothing here is HTML.
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates / "messages")),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701
            trim_blocks=True,
            lstrip_blocks=True,
        )

    @functools.lru_cache(maxsize=1024)  # noqa: B019 -- one renderer per worker, texts are few
    def _compiled(self, text: str) -> jinja2.Template:
        return self.env.from_string(text)

    def text(self, text: LocalizedText | str, locale: str, context: MessageContext) -> str:
        source = text.get(locale) if isinstance(text, LocalizedText) else text
        return self._compiled(source).render(**context.as_dict()).strip()

    def has(self, name: str, locale: str) -> bool:
        """Whether the template ``name`` exists for ``locale`` (advice is data: a missing one
        is left out, not an error, so an emergency message always goes out)."""
        folder = "en" if locale == "en" else "zh-CN"
        try:
            self.env.get_template(f"{folder}/{name}.j2")
        except jinja2.TemplateNotFound:
            return False
        return True

    def file(self, name: str, locale: str, context: MessageContext, **extra: Any) -> str:
        folder = "en" if locale == "en" else "zh-CN"
        template = self.env.get_template(f"{folder}/{name}.j2")
        return template.render(**context.as_dict(), **extra).strip()

    def questionnaire(self, questionnaire: Questionnaire, locale: str) -> str:
        questions = []
        example = []
        for question in questionnaire.questions:
            choices = ""
            if question.options:
                choices = " / ".join(
                    f"{index}.{option.label.get(locale)}"
                    for index, option in enumerate(question.options, start=1)
                )
            span = ""
            if question.type in ("scale", "number") and question.min is not None:
                span = f"{question.min:g}–{question.max:g}" + (
                    f" {question.unit}" if question.unit else ""
                )
            questions.append(
                {
                    "text": question.text.get(locale),
                    "type": question.type,
                    "choices": choices,
                    "range": span,
                    "required": question.required,
                }
            )
            if not question.required:
                continue
            if question.type == "yes_no":
                example.append("否" if locale != "en" else "no")
            elif question.options:
                example.append("1")
            elif question.type in ("scale", "number"):
                example.append(f"{question.min or 0:g}")
        folder = "en" if locale == "en" else "zh-CN"
        return (
            self.env.get_template(f"{folder}/questionnaire.j2")
            .render(
                title=questionnaire.title.get(locale),
                questions=questions,
                example=("," if locale != "en" else ", ").join(example),
            )
            .strip()
        )

    def touchpoint(
        self,
        message: LocalizedText,
        questionnaire: Questionnaire | None,
        locale: str,
        context: MessageContext,
        *,
        reminder: int = 0,
        only: tuple[str, ...] | list[str] = (),
        rejected: Mapping[str, str] | None = None,
    ) -> RenderedMessage:
        """The touchpoint's message and questions; ``only``: the re-ask of these questions
        after a partial reply (numbered afresh), saying for each answer in ``rejected``
        (question → what the patient wrote) what was expected instead."""
        if only and questionnaire is not None:
            questionnaire = questionnaire.model_copy(
                update={"questions": [q for q in questionnaire.questions if q.id in only]}
            )
            problems = [
                {
                    "question": q.text.get(locale),
                    "given": rejected[q.id],
                    "expected": _expected(q, locale),
                }
                for q in questionnaire.questions
                if rejected and q.id in rejected
            ]
            opening = self.file("reask", locale, context, rejected=problems)
        elif reminder:
            opening = self.file("reminder", locale, context)
        else:
            opening = self.text(message, locale, context)
        body = opening
        if questionnaire is not None:
            body += "\n\n" + self.questionnaire(questionnaire, locale)
        subject = questionnaire.title.get(locale) if questionnaire else opening.split("。")[0][:40]
        return RenderedMessage(subject=subject, body=body)


def _expected(question: Question, locale: str) -> str:
    """What an answer to ``question`` must look like, in the patient's words."""
    english = locale == "en"
    if (
        question.type in ("number", "scale")
        and question.min is not None
        and question.max is not None
    ):
        unit = f" {question.unit}" if question.unit else ""
        if english:
            return f"a number from {question.min:g} to {question.max:g}{unit}"
        return f"{question.min:g}–{question.max:g}{unit}之间的数字"
    if question.type in ("number", "scale"):
        return "a number" if english else "一个数字"
    if question.type == "choice":
        count = len(question.options)
        return f"an option number from 1 to {count}" if english else f"选项编号 1–{count}"
    if question.type == "yes_no":
        return "yes or no" if english else "“是”或“否”"
    return "your answer in words" if english else "文字回答"
