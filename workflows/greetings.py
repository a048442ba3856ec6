"""The humane-touch calendar: which days a patient gets a greeting, and what it says.

From the seeds: festival and birthday greetings keep the hospital close to the patient
("王阿姨，立冬了，记得添衣保暖，您的血压监测别忘了哦。"). This module only computes dates
and loads texts; intake and the ``extend_greetings`` activity hand the dates to the journey
workflow as data, so workflow code never needs the calendar library.

Occasions (ids are what ``templates/messages/greetings.yaml`` is keyed by):

- ``birthday`` — a 29 February birthday is kept on 28 February in common years;
- festivals: ``new_year`` (元旦, 1 January), ``spring_festival`` (春节, lunar 1/1),
  ``lantern_festival`` (元宵, 1/15), ``dragon_boat`` (端午, 5/5), ``mid_autumn`` (中秋, 8/15)
  and ``double_ninth`` (重阳, 9/9, the elders' festival);
- the solar terms (节气) when seasonal health advice is customary: ``lichun`` 立春,
  ``lixia`` 立夏, ``dashu`` 大暑 (heat), ``liqiu`` 立秋, ``bailu`` 白露 (cool nights),
  ``lidong`` 立冬, ``dongzhi`` 冬至 and ``dahan`` 大寒 (cold). The others are left out so
  that a patient hears from us about once a month, not every fortnight.

A patient gets at most one greeting a day: when occasions fall on the same date the
birthday wins over a festival, and a festival over a solar term.

Lunar dates and solar terms come from ``lunar_python`` (6tail's lunar calendar, pure
Python, MIT), computed in China Standard Time; its dates for 2024–2035 agree with ``sxtwl``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import jinja2
import jinja2.meta
import yaml
from lunar_python import Lunar
from pydantic import RootModel, ValidationError

from suifang.core.errors import ConfigurationError
from suifang.core.pathways import LocalizedText

__all__ = [
    "FESTIVALS",
    "GREETING_TEXTS",
    "GREETING_VARIABLES",
    "OCCASION_IDS",
    "SOLAR_TERMS",
    "Occasion",
    "OccasionKind",
    "greeting_occasions",
    "load_greeting_texts",
]

OccasionKind = Literal["birthday", "festival", "solar_term"]

GREETING_TEXTS = (
    Path(__file__).resolve().parent.parent / "templates" / "messages" / "greetings.yaml"
)
GREETING_VARIABLES = frozenset({"name", "department", "hospital", "points"})
"""What a greeting text may use; anything else is a typo caught when the file is loaded."""

# id → (lunar month, lunar day); each falls in the Gregorian year of its lunar year.
_LUNAR_FESTIVALS: dict[str, tuple[int, int]] = {
    "spring_festival": (1, 1),
    "lantern_festival": (1, 15),
    "dragon_boat": (5, 5),
    "mid_autumn": (8, 15),
    "double_ninth": (9, 9),
}
_GREGORIAN_FESTIVALS: dict[str, tuple[int, int]] = {"new_year": (1, 1)}
FESTIVALS: tuple[str, ...] = (*_GREGORIAN_FESTIVALS, *_LUNAR_FESTIVALS)

SOLAR_TERMS: dict[str, str] = {
    "lichun": "立春",
    "lixia": "立夏",
    "dashu": "大暑",
    "liqiu": "立秋",
    "bailu": "白露",
    "lidong": "立冬",
    "dongzhi": "冬至",
    "dahan": "大寒",
}
"""The solar terms greeted, id → Chinese name."""

# lunar_python names the terms of the neighbouring years in its table in pinyin.
_PINYIN_TERMS = {
    "DA_XUE": "大雪",
    "DONG_ZHI": "冬至",
    "XIAO_HAN": "小寒",
    "DA_HAN": "大寒",
    "LI_CHUN": "立春",
    "YU_SHUI": "雨水",
    "JING_ZHE": "惊蛰",
}
_TERM_IDS = {name: term_id for term_id, name in SOLAR_TERMS.items()}

OCCASION_IDS: tuple[str, ...] = ("birthday", *FESTIVALS, *SOLAR_TERMS)
_PRECEDENCE: dict[OccasionKind, int] = {"birthday": 0, "festival": 1, "solar_term": 2}


@dataclass(frozen=True, slots=True)
class Occasion:
    """One day worth a greeting."""

    date: dt.date
    kind: OccasionKind
    id: str


def _solar_terms(year: int) -> list[Occasion]:
    # The table of lunar year ``year`` spans December of the year before to March after.
    table = Lunar.fromYmd(year, 6, 1).getJieQiTable()
    found: dict[str, dt.date] = {}
    for name, solar in table.items():
        term_id = _TERM_IDS.get(_PINYIN_TERMS.get(name, name))
        if term_id is not None and solar.getYear() == year:
            found[term_id] = dt.date(year, solar.getMonth(), solar.getDay())
    if found.keys() != SOLAR_TERMS.keys():
        raise RuntimeError(f"lunar_python gave no date for {sorted(SOLAR_TERMS - found.keys())}")
    return [Occasion(day, "solar_term", term_id) for term_id, day in found.items()]


@functools.cache
def _year_occasions(year: int) -> tuple[Occasion, ...]:
    """Every festival and greeted solar term of one Gregorian year (no birthday)."""
    occasions = [
        Occasion(dt.date(year, month, day), "festival", festival_id)
        for festival_id, (month, day) in _GREGORIAN_FESTIVALS.items()
    ]
    for festival_id, (month, day) in _LUNAR_FESTIVALS.items():
        solar = Lunar.fromYmd(year, month, day).getSolar()
        occasions.append(
            Occasion(
                dt.date(solar.getYear(), solar.getMonth(), solar.getDay()), "festival", festival_id
            )
        )
    occasions.extend(_solar_terms(year))
    return tuple(occasions)


def _birthday_in(year: int, birth_date: dt.date) -> dt.date:
    try:
        return birth_date.replace(year=year)
    except ValueError:  # 29 February in a common year
        return dt.date(year, 2, 28)


def greeting_occasions(
    start: dt.date, end: dt.date, *, birth_date: dt.date | None
) -> list[Occasion]:
    """The greeting occasions from ``start`` to ``end`` (both included), sorted by date.

    At most one per day (birthday, then festival, then solar term). No birthday is greeted
    on the day of birth itself or when ``birth_date`` is None.
    """
    if start > end:
        raise ValueError("greeting_occasions: start is after end")
    by_day: dict[dt.date, Occasion] = {}
    candidates: list[Occasion] = []
    for year in range(start.year, end.year + 1):
        candidates.extend(_year_occasions(year))
        if birth_date is not None and year > birth_date.year:
            candidates.append(Occasion(_birthday_in(year, birth_date), "birthday", "birthday"))
    for occasion in candidates:
        if not start <= occasion.date <= end:
            continue
        kept = by_day.get(occasion.date)
        if kept is None or _PRECEDENCE[occasion.kind] < _PRECEDENCE[kept.kind]:
            by_day[occasion.date] = occasion
    return [by_day[day] for day in sorted(by_day)]


class _GreetingTexts(RootModel[dict[str, LocalizedText]]):
    """``greetings.yaml``: occasion id → ``{zh-CN: …, en: …}``."""


_JINJA = jinja2.Environment(autoescape=False)  # noqa: S701 -- plain-text SMS, never HTML


def _problems(texts: Mapping[str, LocalizedText]) -> list[str]:
    problems = [f"no text for occasion {o!r}" for o in OCCASION_IDS if o not in texts]
    problems += [
        f"{o!r} is not an occasion (known: {', '.join(OCCASION_IDS)})"
        for o in texts
        if o not in OCCASION_IDS
    ]
    for occasion_id, text in texts.items():
        for locale, source in (("zh-CN", text.zh_cn), ("en", text.en)):
            unknown = jinja2.meta.find_undeclared_variables(_JINJA.parse(source))
            unknown -= GREETING_VARIABLES
            if unknown:
                problems.append(
                    f"{occasion_id}.{locale}: unknown variable(s) {', '.join(sorted(unknown))} "
                    f"(allowed: {', '.join(sorted(GREETING_VARIABLES))})"
                )
    return problems


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


@functools.cache
def load_greeting_texts(path: Path = GREETING_TEXTS) -> Mapping[str, LocalizedText]:
    """Every occasion's text in zh-CN and en, validated; read once per process.

    A missing occasion or locale, an unknown occasion id, a jinja2 syntax error or a
    variable other than name, department, hospital and points is a
    :class:`~suifang.core.errors.ConfigurationError` naming the file and the occasion.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigurationError(
            f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    try:
        texts = _GreetingTexts.model_validate(data).root
    except ValidationError as exc:
        problems = [
            f"{_location(tuple(error['loc']))}: {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors()
        ]
        raise ConfigurationError(
            f"{path}: invalid greeting texts\n  " + "\n  ".join(problems)
        ) from None
    problems = _problems(texts)
    if problems:
        raise ConfigurationError(f"{path}: invalid greeting texts\n  " + "\n  ".join(problems))
    return MappingProxyType(dict(texts))
