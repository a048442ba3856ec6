"""The greeting calendar (festivals, solar terms, birthdays) and the greeting texts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
import pytest

from suifang.core.errors import ConfigurationError
from suifang.workflows.greetings import (
    OCCASION_IDS,
    Occasion,
    greeting_occasions,
    load_greeting_texts,
)

# Published calendar dates (China Standard Time).
KNOWN_DATES = [
    ("new_year", dt.date(2026, 1, 1)),
    ("dahan", dt.date(2026, 1, 20)),
    ("lichun", dt.date(2026, 2, 4)),
    ("spring_festival", dt.date(2026, 2, 17)),
    ("lantern_festival", dt.date(2026, 3, 3)),
    ("lixia", dt.date(2026, 5, 5)),
    ("dragon_boat", dt.date(2026, 6, 19)),
    ("dashu", dt.date(2026, 7, 23)),
    ("liqiu", dt.date(2026, 8, 7)),
    ("bailu", dt.date(2026, 9, 7)),
    ("mid_autumn", dt.date(2026, 9, 25)),
    ("double_ninth", dt.date(2026, 10, 18)),
    ("lidong", dt.date(2026, 11, 7)),
    ("dongzhi", dt.date(2026, 12, 22)),
    ("spring_festival", dt.date(2027, 2, 6)),
    ("lantern_festival", dt.date(2027, 2, 20)),
    ("dragon_boat", dt.date(2027, 6, 9)),
    ("mid_autumn", dt.date(2027, 9, 15)),
    ("double_ninth", dt.date(2027, 10, 8)),
    ("lidong", dt.date(2027, 11, 7)),
    ("dongzhi", dt.date(2027, 12, 22)),
]

SAMPLE_CONTEXTS = {
    "zh-CN": {"name": "王阿姨", "department": "心血管内科", "hospital": "市第一人民医院"},
    "en": {"name": "Mrs Wang", "department": "Cardiology", "hospital": "First People's Hospital"},
}
SMS_LIMIT = {"zh-CN": 70, "en": 200}


def _on(start: dt.date, end: dt.date, birth_date: dt.date | None = None) -> dict[str, dt.date]:
    return {o.id: o.date for o in greeting_occasions(start, end, birth_date=birth_date)}


# --------------------------------------------------------------------------- calendar


@pytest.mark.parametrize(("occasion_id", "day"), KNOWN_DATES)
def test_occasions_fall_on_the_published_dates(occasion_id: str, day: dt.date) -> None:
    year = _on(dt.date(day.year, 1, 1), dt.date(day.year, 12, 31))
    assert year[occasion_id] == day


def test_a_year_has_each_festival_and_term_once_in_date_order() -> None:
    occasions = greeting_occasions(dt.date(2026, 1, 1), dt.date(2026, 12, 31), birth_date=None)
    assert sorted(o.id for o in occasions) == sorted(i for i in OCCASION_IDS if i != "birthday")
    assert [o.date for o in occasions] == sorted(o.date for o in occasions)
    kinds = {o.id: o.kind for o in occasions}
    assert kinds["double_ninth"] == "festival"
    assert kinds["lidong"] == "solar_term"


def test_both_ends_of_the_range_are_included() -> None:
    occasions = greeting_occasions(dt.date(2026, 11, 7), dt.date(2026, 12, 22), birth_date=None)
    assert occasions == [
        Occasion(dt.date(2026, 11, 7), "solar_term", "lidong"),
        Occasion(dt.date(2026, 12, 22), "solar_term", "dongzhi"),
    ]


def test_a_range_across_new_year() -> None:
    assert _on(dt.date(2026, 12, 1), dt.date(2027, 1, 31)) == {
        "dongzhi": dt.date(2026, 12, 22),
        "new_year": dt.date(2027, 1, 1),
        "dahan": dt.date(2027, 1, 20),
    }


def test_birthday_is_greeted_every_year() -> None:
    birthdays = [
        o.date
        for o in greeting_occasions(
            dt.date(2026, 1, 1), dt.date(2027, 12, 31), birth_date=dt.date(1958, 7, 3)
        )
        if o.kind == "birthday"
    ]
    assert birthdays == [dt.date(2026, 7, 3), dt.date(2027, 7, 3)]


def test_a_29_february_birthday_is_kept_on_28_february_in_common_years() -> None:
    leapling = dt.date(1960, 2, 29)
    assert _on(dt.date(2027, 2, 1), dt.date(2027, 3, 31), leapling)["birthday"] == dt.date(
        2027, 2, 28
    )
    assert _on(dt.date(2028, 2, 1), dt.date(2028, 3, 31), leapling)["birthday"] == dt.date(
        2028, 2, 29
    )


def test_no_birthday_greeting_on_the_day_of_birth() -> None:
    newborn = dt.date(2026, 3, 10)
    assert "birthday" not in _on(dt.date(2026, 3, 1), dt.date(2026, 3, 31), newborn)


def test_one_greeting_a_day_birthday_first_then_festival() -> None:
    # Born on what is Spring Festival in 2026: the birthday greeting takes the day.
    on_spring_festival = greeting_occasions(
        dt.date(2026, 2, 17), dt.date(2026, 2, 17), birth_date=dt.date(1950, 2, 17)
    )
    assert on_spring_festival == [Occasion(dt.date(2026, 2, 17), "birthday", "birthday")]
    # In 2014 Mid-Autumn and 白露 were both on 8 September: the festival is greeted.
    assert greeting_occasions(dt.date(2014, 9, 8), dt.date(2014, 9, 8), birth_date=None) == [
        Occasion(dt.date(2014, 9, 8), "festival", "mid_autumn")
    ]


def test_an_inverted_range_is_refused() -> None:
    with pytest.raises(ValueError, match="start is after end"):
        greeting_occasions(dt.date(2026, 2, 1), dt.date(2026, 1, 1), birth_date=None)


# --------------------------------------------------------------------------- texts


def _render(source: str, **context: object) -> str:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    return environment.from_string(source).render(**context).strip()


@pytest.mark.parametrize("occasion_id", OCCASION_IDS)
@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_every_occasion_has_a_short_text_in_each_language(occasion_id: str, locale: str) -> None:
    text = load_greeting_texts()[occasion_id].get(locale)
    context = SAMPLE_CONTEXTS[locale]
    rendered = _render(text, **context, points=120)
    assert context["name"] in rendered
    assert context["department"] in rendered
    assert len(rendered) <= SMS_LIMIT[locale]
    # Without department or hospital the sign-off disappears instead of dangling.
    bare = _render(text, name=context["name"], department="", hospital="", points=0)
    assert not bare.endswith(("——", "—", ","))


def test_the_lidong_greeting_is_the_one_from_the_seed() -> None:
    text = load_greeting_texts()["lidong"].get("zh-CN")
    rendered = _render(text, name="王阿姨", department="", hospital="", points=0)
    assert rendered == "王阿姨，立冬了，记得添衣保暖，您的血压监测别忘了哦。"


def test_birthday_mentions_points_only_when_there_are_some() -> None:
    texts = load_greeting_texts()["birthday"]
    with_points = _render(texts.get("zh-CN"), **SAMPLE_CONTEXTS["zh-CN"], points=120)
    without = _render(texts.get("zh-CN"), **SAMPLE_CONTEXTS["zh-CN"], points=0)
    assert "120积分" in with_points
    assert "积分" not in without
    assert "120 follow-up points" in _render(texts.get("en"), **SAMPLE_CONTEXTS["en"], points=120)


def test_a_missing_locale_is_named_with_its_occasion(tmp_path: Path) -> None:
    path = tmp_path / "greetings.yaml"
    path.write_text(
        "\n".join(
            f'{o}:\n  zh-CN: "{{{{ name }}}}，您好。"\n  en: "Hello."'
            for o in OCCASION_IDS
            if o != "lidong"
        )
        + '\nlidong:\n  zh-CN: "{{ name }}，立冬了。"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match=r"lidong\.en: Field required") as caught:
        load_greeting_texts(path)
    assert str(path) in str(caught.value)


def test_a_missing_occasion_an_unknown_one_and_a_typo_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "greetings.yaml"
    path.write_text(
        "\n".join(
            f'{o}:\n  zh-CN: "{{{{ name }}}}，您好。"\n  en: "Hello {{{{ nmae }}}}."'
            if o == "dahan"
            else f'{o}:\n  zh-CN: "{{{{ name }}}}，您好。"\n  en: "Hello."'
            for o in (*OCCASION_IDS[1:], "qingming")
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as caught:
        load_greeting_texts(path)
    message = str(caught.value)
    assert "no text for occasion 'birthday'" in message
    assert "'qingming' is not an occasion" in message
    assert "dahan.en: unknown variable(s) nmae" in message
