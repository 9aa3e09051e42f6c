"""How message text becomes searchable words: one folding rule for both backends (pure).

The text of a message and the words of a query go through the same :func:`tokens`, and the
search index of either database stores exactly those tokens (SQLite: FTS5 with the ``ascii``
tokenizer over the tokens joined by spaces, which splits them back unchanged; PostgreSQL: a
``tsvector`` built from them, not PostgreSQL's own parser). So matching is the same on both:

* case and accents are folded: ``casefold``, then NFKD with the nonspacing marks dropped, so
  ``Café`` is ``cafe`` and ``RÉSUMÉ`` is ``resume`` (``ß`` is ``ss``, ``ﬁ`` is ``fi``);
* a word is a run of letters, digits and spacing marks of any script; everything else
  separates words;
* scripts written without spaces (Chinese, Japanese kana and kanji, Korean hangul) give one
  token per character, so a word inside a sentence is found as a phrase of its characters.

Changing these rules changes what is indexed: it needs a migration that rebuilds the index.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from typing import Final

#: A token longer than this is cut (in the index and in queries alike): it bounds the index
#: and PostgreSQL's lexemes (at most 2,047 bytes).
MAX_TOKEN: Final = 64
#: At most this many tokens of a message are indexed: PostgreSQL's positions end at 16,383,
#: and both backends must see the same words.
MAX_TOKENS: Final = 16383

_ASCII_WORD = re.compile(r"[a-z0-9]+")
# The same words, each cut to MAX_TOKEN in the same pass (the writer's path: no Python loop).
_ASCII_CUT = re.compile(rf"([a-z0-9]{{1,{MAX_TOKEN}}})[a-z0-9]*")

#: Code point ranges whose letters are each a word of their own.
_CJK_RANGES: Final = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x318F),  # Bopomofo, Hangul compatibility Jamo
    (0x31A0, 0x31FF),  # Bopomofo extended, Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # halfwidth Katakana
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)

# What one character of input becomes: (folded text, kind) with kind "w" (part of a word),
# "c" (a word by itself), "m" (dropped mark: neither part nor separator) or "s" (separator).
_Kind = tuple[tuple[str, str], ...]


def _is_cjk(code: int) -> bool:
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _is_word_char(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in "LN" or category in ("Mc", "Me")


@functools.lru_cache(maxsize=65536)
def _fold_char(ch: str) -> _Kind:
    """Each character of the folded form of ``ch``, and what it is."""
    if _is_cjk(ord(ch)):
        # Keep the marks of kana (ガ is not カ); halfwidth forms become fullwidth.
        return tuple(
            (c, "c" if _is_word_char(c) else "s") for c in unicodedata.normalize("NFKC", ch)
        )
    decomposed = unicodedata.normalize("NFKD", ch.casefold())
    kept = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    if not kept:
        return (("", "m"),) if decomposed else ()
    out: list[tuple[str, str]] = []
    for c in unicodedata.normalize("NFC", kept):
        if _is_cjk(ord(c)):
            out.append((c, "c"))
        else:
            out.append((c, "w" if _is_word_char(c) else "s"))
    return tuple(out)


def spans(text: str) -> Iterator[tuple[str, int, int]]:
    """Each token of ``text`` with where it is: ``(token, start, end)`` (code points)."""
    if text.isascii():
        for match in _ASCII_WORD.finditer(text.lower()):
            yield match.group()[:MAX_TOKEN], match.start(), match.end()
        return
    word: list[str] = []
    start = 0
    for index, ch in enumerate(text):
        for piece, (folded, kind) in enumerate(_fold_char(ch)):
            if kind == "w":
                if not word:
                    start = index
                word.append(folded)
            elif kind == "m":
                continue
            else:
                if word:  # ends before this character, or inside it (``½``)
                    yield "".join(word)[:MAX_TOKEN], start, index + (piece > 0)
                    word = []
                if kind == "c":
                    yield folded, index, index + 1
    if word:
        yield "".join(word)[:MAX_TOKEN], start, len(text)


def tokens(text: str) -> list[str]:
    """The searchable words of ``text``, folded, in order (at most :data:`MAX_TOKENS`)."""
    if text.isascii():
        found: list[str] = _ASCII_CUT.findall(text.lower())
    else:
        found = [token for token, _start, _end in spans(text)]
    return found if len(found) <= MAX_TOKENS else found[:MAX_TOKENS]


def folded(text: str) -> str:
    """The tokens of ``text`` joined by single spaces."""
    return " ".join(tokens(text))


_LONG_ASCII_WORD = re.compile(rf"[A-Za-z0-9]{{{MAX_TOKEN + 1}}}")


def for_ascii_tokenizer(text: str) -> str:
    """What to give a tokenizer that splits at ASCII non-alphanumerics, folds ASCII case and
    keeps other characters in words (SQLite FTS5's ``ascii``) so it finds exactly
    :func:`tokens`: plain ASCII text as it is (the tokenizer folds it the same way, and the
    writer saves the Python pass), anything else folded here."""
    if text.isascii() and len(text) < 2 * MAX_TOKENS and not _LONG_ASCII_WORD.search(text):
        return text
    return folded(text)
