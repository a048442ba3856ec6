"""Chinese words typed or dictated as another word that sounds the same.

Patients write with a pinyin keyboard or by voice, so a word often arrives as its homophone:
兄口 for 胸口, 流雪 for 流血, 头云 for 头晕, 通 for 痛. :class:`SoundAlikes` finds lexicon
phrases by their toneless pinyin (pypinyin) where the characters themselves did not match.

Only stretches that are *not* real words are read this way — the Chinese counterpart of
correcting only English words missing from the dictionary: 留学 (studying abroad) sounds like
流血 and 运到 (delivered) like 晕倒, but both are words in jieba's dictionary, so they are left
alone. And the slip must be the likelier reading (a noisy channel over jieba's word
frequencies): 流雪 is far more likely 流血 than "flow" + "snow", while 少了 ("less") is not 烧了
("feverish") — 少 is the commoner word. A slip changes a character, not all of them (护土 is
a slip for 护士, not 糊涂). Characters of a phrase already found stay as
written (来的屎 is not the insulin 来得时). A single character is read as a one-character
symptom only straight after a body site (胸口通 → 胸口痛), where it cannot be part of some
other word.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jieba
from pypinyin import lazy_pinyin

__all__ = ["SoundAlike", "SoundAlikes"]

_MAX_PHRASE = 8
"""Longer lexicon phrases are not looked up by sound (few are typed whole, all slowly)."""
_LIKELIER = 2.0
"""How much likelier (natural log) the lexicon phrase must be than what was written."""


@dataclass(frozen=True, slots=True)
class SoundAlike:
    """``text[start:end]`` sounds like lexicon ``phrase``."""

    start: int
    end: int
    phrase: str


class SoundAlikes:
    """Lexicon phrases by sound: ``phrases`` (all Chinese, normalised), ``single`` the
    one-character phrases that may be read after a body site (symptoms)."""

    def __init__(self, phrases: Iterable[str], single: Iterable[str]) -> None:
        self._by_sound: dict[tuple[str, ...], str] = {}
        for phrase in sorted(phrases, key=lambda p: (-len(p), p)):
            if 2 <= len(phrase) <= _MAX_PHRASE and _all_chinese(phrase):
                self._by_sound.setdefault(_sounds(phrase), phrase)
        self._single = {_sounds(p)[0]: p for p in sorted(single) if len(p) == 1}
        self._longest = max((len(key) for key in self._by_sound), default=0)

    def find(
        self, text: str, covered: Mapping[int, int], after_site: frozenset[int]
    ) -> list[SoundAlike]:
        """Sound-alikes in ``text``. ``covered`` maps the start of each phrase already found
        to its end (a sound-alike may swallow shorter ones, never cut a longer one);
        ``after_site`` are the positions straight after a body site."""
        if not self._by_sound or not any(_is_chinese(c) for c in text):
            return []
        sounds = list(_sounds(text))
        spans = sorted(covered.items())
        found: list[SoundAlike] = []
        position = 0
        while position < len(text):
            match = self._longest_at(text, sounds, position, spans)
            if match is None and position in after_site and _is_chinese(text[position]):
                match = self._single_at(text, sounds, position, spans)
            if match is None:
                position += 1
                continue
            found.append(match)
            position = match.end
        return found

    def _single_at(
        self, text: str, sounds: list[str], position: int, spans: list[tuple[int, int]]
    ) -> SoundAlike | None:
        """A one-character symptom right after a body site (胸口通 → 痛), unless the
        character begins a word that reads far better as written (大腿根穿刺 is not 喘)."""
        phrase = self._single.get(sounds[position])
        if phrase is None or phrase == text[position] or _inside(position, position + 1, spans):
            return None
        words = _words()
        for end in range(position + 2, min(position + 5, len(text) + 1)):
            written = text[position:end]
            if words.known(written):
                changed = phrase + written[1:]
                if words.log_p(changed) - words.log_p(written) < -_LIKELIER:
                    return None
        return SoundAlike(position, position + 1, phrase)

    def _longest_at(
        self, text: str, sounds: list[str], start: int, spans: list[tuple[int, int]]
    ) -> SoundAlike | None:
        for length in range(min(self._longest, len(text) - start), 1, -1):
            end = start + length
            phrase = self._by_sound.get(tuple(sounds[start:end]))
            if phrase is None or phrase == text[start:end]:
                continue
            written = text[start:end]
            if not _all_chinese(written) or _cuts(start, end, spans):
                continue
            if all(a != b for a, b in zip(written, phrase, strict=True)):
                continue  # a slip changes a character, not the whole word (护土 is not 糊涂)
            if not _keeps_found_words(start, phrase, text, spans):
                continue
            words = _words()
            if words.known(written) or words.log_p(phrase) - words.log_p(written) < _LIKELIER:
                continue
            return SoundAlike(start, end, phrase)
        return None


def _sounds(text: str) -> tuple[str, ...]:
    """Each character's usual toneless reading, one per character (not by word: in a word
    pypinyin may read 血 as xie, and the slip 雪 is xue)."""
    return tuple(
        reading if _is_chinese(char) else ""
        for char, reading in zip(text, lazy_pinyin(list(text), errors=lambda c: c), strict=True)
    )


def _keeps_found_words(start: int, phrase: str, text: str, spans: list[tuple[int, int]]) -> bool:
    """Whether the phrases already found inside the window are spelled as in ``phrase``
    (头云 → 头晕 keeps 头; 来的屎 → 来得时 would rewrite 屎)."""
    end = start + len(phrase)
    return all(
        text[s:e] == phrase[s - start : e - start] for s, e in spans if start <= s and e <= end
    )


def _inside(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(s <= start and end <= e for s, e in spans)


def _cuts(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """Whether [start, end) overlaps a phrase already found that it does not contain."""
    return any(s < end and start < e and not (start <= s and e <= end) for s, e in spans)


def _is_chinese(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"


def _all_chinese(text: str) -> bool:
    return all(_is_chinese(c) for c in text)


class _Words:
    """jieba's dictionary (about 350 000 words with frequencies) as a unigram model."""

    def __init__(self) -> None:
        jieba.setLogLevel(logging.WARNING)
        self._tokenizer = jieba.Tokenizer()
        self._tokenizer.initialize()
        self._log_total = math.log(self._tokenizer.total)

    def known(self, text: str) -> bool:
        return bool(self._tokenizer.FREQ.get(text))

    def log_p(self, text: str) -> float:
        """Log-probability of ``text`` as its likeliest segmentation into words."""
        frequencies = self._tokenizer.FREQ
        return sum(
            math.log(frequencies.get(word) or 1) - self._log_total
            for word in self._tokenizer.lcut(text, HMM=False)
        )


@functools.cache
def _words() -> _Words:
    return _Words()
