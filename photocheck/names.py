"""Finding listed students' names in text (captions, tags, file names). No I/O here.

Text and names are folded the same way (accents removed, case ignored, possessives and
apostrophes dropped, camelCase and letter/digit runs split) and compared token by token, so
"ZOË müller's" names Zoë Müller while "Jane Doerr" does not name Jane Doe.

A student is *named* when a given name (first name, preferred name, or the first of several
given names) and the last name stand next to each other in either order ("Zoë Müller",
"Müller, Zoë"; one middle name or initial may sit between "Zoë A. Müller"), or run together
as one word ("#ZoeMuller", "zoemuller.jpg").

A given name alone *may* name a student (level "first_name", a review) only when it points
at one child: at least `min_letters` letters, not in common_names.COMMON_FIRST_NAMES, and
no other roster row has it as a given name. Anything else alone is ignored.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

from photocheck.common_names import COMMON_FIRST_NAMES

NAMED = "named"            # given name + last name: the student is named
FIRST_NAME = "first_name"  # a rare given name alone: may be the student (review)

# Letters NFKD does not decompose into a base letter + accent.
_SPECIAL = str.maketrans({"ß": "ss", "ẞ": "ss", "ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe",
                          "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ð": "d", "Ð": "d", "þ": "th", "Þ": "th",
                          "ı": "i", "ħ": "h", "Ħ": "h"})
_APOSTROPHES = str.maketrans({c: "'" for c in "’‘ʼ`´′"})
_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})
_POSSESSIVE = re.compile(r"'s\b|(?<=\w)'(?!\w)")
_INNER_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")
# Chinese, Japanese and Korean are written without spaces between names and words: each of
# their characters is a token of its own, so "张伟在比赛" holds 张 伟 side by side.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W\d_{_CJK}]+|\d+")


def fold(text: str) -> str:
    """Lower case, no accents, typographic apostrophes made plain."""
    if text.isascii():  # nothing to translate but ` nor to decompose: _fold_any's result without its letter loop
        return text.replace("`", "'").lower()
    return _fold_any(text)


def _fold_any(text: str) -> str:
    text = text.translate(_SPECIAL).translate(_APOSTROPHES)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", text).casefold()  # NFC puts Hangul syllables back together


_ASCII_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _split_camel(text: str) -> str:
    if text.isascii():  # _split_camel_any's split, in one pass of the regex engine
        return _ASCII_CAMEL.sub(" ", text)
    return _split_camel_any(text)


def _split_camel_any(text: str) -> str:
    out = []
    for i, c in enumerate(text):
        if i and c.isupper() and text[i - 1].islower():
            out.append(" ")
        out.append(c)
    return "".join(out)


def tokens(text: str, camel: bool = False) -> list[str]:
    """The folded words of `text`: "ZOË müller's" -> ["zoe", "muller"]; `camel` also splits
    "ZoeMuller" -> ["zoe", "muller"]."""
    if camel:
        text = _split_camel(text)
    text = _INNER_APOSTROPHE.sub("", _POSSESSIVE.sub("", fold(text)))
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Person:
    """A roster row's names (the student id is what findings report, never the names)."""

    student_id: str
    first_name: str = ""
    last_name: str = ""
    preferred_name: str = ""


@dataclass(frozen=True)
class NameHit:
    student_id: str
    level: str  # NAMED | FIRST_NAME


def _variants(name: str) -> set[tuple[str, ...]]:
    """Token sequences a written name may take: as is, camelCase split, German ä->ae."""
    out = set()
    for form in {name, name.translate(_GERMAN)}:
        for camel in (False, True):
            seq = tuple(tokens(form, camel))
            if seq:
                out.add(seq)
    return out


@dataclass
class NameIndex:
    """Every roster row's name forms, indexed by their first token."""

    min_letters: int = 4
    # first token -> (first part, second part, student id, max words between): given-then-last
    # allows one middle name or initial between, last-then-given ("Müller, Zoë") does not.
    _pairs: dict[str, list[tuple[tuple[str, ...], tuple[str, ...], str, int]]] = field(default_factory=dict)
    _joined: dict[str, set[str]] = field(default_factory=dict)   # "zoemuller" -> ids
    _alone: dict[str, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    size: int = 0

    @classmethod
    def build(cls, people: Iterable[Person], min_letters: int = 4) -> "NameIndex":
        index = cls(min_letters=min_letters)
        people = list(people)
        index.size = len(people)
        givens_of: dict[str, set[tuple[str, ...]]] = {}
        for p in people:
            givens = _given_forms(p)
            lasts = _variants(p.last_name) if p.last_name.strip() else set()
            if not givens and lasts:  # only a last name: it stands in for a given name
                givens, lasts = lasts, set()
            givens_of[p.student_id] = givens
            for g in givens:
                for last in lasts:
                    index._pairs.setdefault(g[0], []).append((g, last, p.student_id, 1))
                    index._pairs.setdefault(last[0], []).append((last, g, p.student_id, 0))
                    for joined in ("".join(g + last), "".join(last + g)):
                        if len(joined) >= 6:
                            index._joined.setdefault(joined, set()).add(p.student_id)
        owners: dict[tuple[str, ...], set[str]] = {}
        for sid, givens in givens_of.items():
            for g in givens:
                owners.setdefault(g, set()).add(sid)
        for g, sids in owners.items():
            if len(sids) == 1 and index.distinctive(g):
                index._alone.setdefault(g[0], []).append((g, next(iter(sids))))
        return index

    def distinctive(self, given: tuple[str, ...]) -> bool:
        """Can this given name alone point at one child? (Uniqueness on the roster is checked apart.)"""
        letters = sum(len(t) for t in given if t.isalpha())
        return letters >= self.min_letters and not all(t in COMMON_FIRST_NAMES for t in given)

    def find(self, text: str) -> list[NameHit]:
        """Students named (or, for a rare first name alone, maybe named) in `text`, by id."""
        named: set[str] = set()
        maybe: set[str] = set()
        for camel in (False, True):
            toks = tokens(text, camel)
            n = len(toks)
            for i, t in enumerate(toks):
                named |= self._joined.get(t, set())
                for a, b, sid, max_gap in self._pairs.get(t, ()):
                    if sid in named or tuple(toks[i:i + len(a)]) != a:
                        continue
                    j = i + len(a)
                    if any(tuple(toks[j + g:j + g + len(b)]) == b for g in range(max_gap + 1) if j + g + len(b) <= n):
                        named.add(sid)
                for g, sid in self._alone.get(t, ()):
                    if tuple(toks[i:i + len(g)]) == g:
                        maybe.add(sid)
        return ([NameHit(s, NAMED) for s in sorted(named)]
                + [NameHit(s, FIRST_NAME) for s in sorted(maybe - named)])


def _given_forms(p: Person) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for name in (p.first_name, p.preferred_name):
        if not name.strip():
            continue
        for seq in _variants(name):
            out.add(seq)
            if len(seq) > 1:
                out.add(seq[:1])  # "Mary Ann" is often just "Mary"
    return out
