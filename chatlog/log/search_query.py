"""The search syntax people know from web search, parsed into a small typed query (pure).

``deploy friday`` finds messages with both words, ``"release notes"`` the phrase, ``-draft``
excludes a word, ``cats OR dogs`` either, ``depl*`` any word starting so. Words are folded
exactly as the index folds message text (:mod:`chatlog.log.words`): case and accents do not
matter, and a word of Chinese or Japanese characters is the phrase of its characters.

The user's text never reaches a database: :func:`parse` turns it into :class:`Query`, whose
phrases hold only folded tokens (letters and digits), and each backend renders that into its
own match syntax (:func:`fts5` here, the ``tsquery`` in :mod:`chatlog.log.postgres.search`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chatlog.log.words import spans, tokens
from chatlog.protocol import SEARCH_MAX_QUERY

#: Longest query text, in characters (the socket's bound too).
MAX_QUERY: Final = SEARCH_MAX_QUERY
#: Most phrases (words, quoted phrases, prefixes) in one query.
MAX_TERMS: Final = 16
#: Most tokens in one phrase.
MAX_PHRASE: Final = 32


class BadQuery(ValueError):
    """A query that cannot be searched: the message says why (``bad-query``)."""


@dataclass(frozen=True, slots=True)
class Phrase:
    """Tokens that must follow each other; with ``prefix`` the last one is a prefix."""

    tokens: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """Every group must match (a group: any of its phrases); no excluded phrase may."""

    groups: tuple[tuple[Phrase, ...], ...]
    exclude: tuple[Phrase, ...] = ()

    def phrases(self) -> list[Phrase]:
        """The phrases that must or may match (what a snippet marks)."""
        return [phrase for group in self.groups for phrase in group]


@dataclass(slots=True)
class _Item:
    phrase: Phrase | None  # None: nothing searchable in it
    negated: bool = False
    is_or: bool = False


def _lex(text: str) -> list[_Item]:
    items: list[_Item] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negated = text[i] == "-" and i + 1 < n and not text[i + 1].isspace()
        if negated:
            i += 1
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise BadQuery("a quote is not closed")
            body, i = text[i + 1 : end], end + 1
            prefix = i < n and text[i] == "*"
            while i < n and text[i] == "*":
                i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] != '"':
                i += 1
            body = text[start:i]
            if body == "OR" and not negated:
                items.append(_Item(None, is_or=True))
                continue
            prefix = body.endswith("*")
        items.append(_Item(_phrase(body, prefix), negated))
    return items


def _phrase(body: str, prefix: bool) -> Phrase | None:
    words = tokens(body)
    if not words:
        return None
    if len(words) > MAX_PHRASE:
        raise BadQuery(f"a phrase has more than {MAX_PHRASE} words")
    # A prefix only counts when the star ends a word (``caf*``), not after a space or a sign.
    prefix = prefix and _ends_in_word(body.rstrip("*"))
    return Phrase(tuple(words), prefix)


def _ends_in_word(body: str) -> bool:
    ends = [end for _token, _start, end in spans(body)]
    return bool(ends) and ends[-1] == len(body)


def parse(text: str) -> Query:
    """The query of ``text``; :class:`BadQuery` when it has nothing to search for."""
    if len(text) > MAX_QUERY:
        raise BadQuery(f"the query is longer than {MAX_QUERY} characters")
    groups: list[list[Phrase]] = []
    exclude: list[Phrase] = []
    items = _lex(text)
    joining = False  # the previous item was an OR between two searchable words
    for index, item in enumerate(items):
        if item.is_or:
            following = items[index + 1] if index + 1 < len(items) else None
            joining = (
                bool(groups)
                and not items[index - 1].negated
                and items[index - 1].phrase is not None
                and following is not None
                and following.phrase is not None
                and not following.negated
            )
            if not joining:  # a stray OR is the word "or"
                groups.append([Phrase(("or",))])
            continue
        if item.phrase is None:
            joining = False
            continue
        if item.negated:
            exclude.append(item.phrase)
        elif joining:
            groups[-1].append(item.phrase)
        else:
            groups.append([item.phrase])
        joining = False
    if not groups:
        raise BadQuery(
            "only excluded words; add a word to find" if exclude else "nothing to search for"
        )
    if sum(map(len, groups)) + len(exclude) > MAX_TERMS:
        raise BadQuery(f"more than {MAX_TERMS} words or phrases")
    return Query(tuple(tuple(dict.fromkeys(g)) for g in groups), tuple(exclude))


def _fts5_phrase(phrase: Phrase) -> str:
    # Tokens hold only letters, digits and marks, never a quote; doubled all the same.
    quoted = '"' + " ".join(phrase.tokens).replace('"', '""') + '"'
    return quoted + " *" if phrase.prefix else quoted


def fts5(query: Query) -> str:
    """The query as an SQLite FTS5 ``MATCH`` expression, fully parenthesised."""
    parts = []
    for group in query.groups:
        rendered = [_fts5_phrase(p) for p in group]
        parts.append(rendered[0] if len(rendered) == 1 else "(" + " OR ".join(rendered) + ")")
    expr = " AND ".join(parts)
    for phrase in query.exclude:
        expr = f"({expr}) NOT {_fts5_phrase(phrase)}"
    return expr


#: Characters of a snippet around its first match, when the text is longer.
SNIPPET_CHARS: Final = 200
_ELLIPSIS: Final = "…"


def snippet(text: str, query: Query) -> list[str]:
    """The part of ``text`` around its first matched word, as alternating segments: plain,
    matched, plain, ... (even indexes plain, odd ones matched; the first may be empty).

    Built from the original text, so it shows the words as written (``Café`` for ``cafe``).
    """
    exact: set[str] = set()
    prefixes: list[str] = []
    for phrase in query.phrases():
        *whole, last = phrase.tokens
        exact.update(whole)
        (prefixes.append(last) if phrase.prefix else exact.add(last))
    hits: list[tuple[int, int]] = []
    for token, start, end in spans(text):
        if token in exact or any(token.startswith(p) for p in prefixes):
            if hits and hits[-1][1] == start:  # adjacent (characters of a CJK word): one mark
                hits[-1] = (hits[-1][0], end)
            elif not hits or start >= hits[-1][1]:
                hits.append((start, end))
    low, high = 0, len(text)
    if high > SNIPPET_CHARS:
        first = hits[0][0] if hits else 0
        low = max(0, min(first - SNIPPET_CHARS // 4, high - SNIPPET_CHARS))
        high = low + SNIPPET_CHARS
    segments = [_ELLIPSIS if low > 0 else ""]
    at = low
    for start, end in hits:
        if start < low or end > high:
            continue
        segments[-1] += text[at:start]
        segments += [text[start:end], ""]
        at = end
    segments[-1] += text[at:high] + (_ELLIPSIS if high < len(text) else "")
    return segments
