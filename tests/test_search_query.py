"""The search syntax translator: web-search syntax in, engine syntax out, never the user's text."""

from __future__ import annotations

import random
import sqlite3

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from chatlog.log.open import opened
from chatlog.log.postgres.search import tsquery, tsvector
from chatlog.log.search_query import BadQuery, Phrase, Query, fts5, parse, snippet
from chatlog.settings import database_url
from tests.backends import Backend

#: Characters that mean something to FTS5, tsquery, SQL or the parser, and some letters.
NASTY = [*"\"'*-()^:{}[]+&|!<>\\;,. \t\nORNEAR", "é", "東", "ß", "\u0301", "\u202e", "😀"]
queries = st.text(alphabet=st.sampled_from(NASTY) | st.characters(), max_size=60)


def test_syntax() -> None:
    """Words, phrases, exclusions, OR and prefixes parse into the query they say."""
    q = parse('Deploy "Release Notes" -draft cats OR dogs caf*')
    assert q.groups == (
        (Phrase(("deploy",)),),
        (Phrase(("release", "notes")),),
        (Phrase(("cats",)), Phrase(("dogs",))),
        (Phrase(("caf",), prefix=True),),
    )
    assert q.exclude == (Phrase(("draft",)),)
    assert parse("東京都").groups == ((Phrase(("東", "京", "都")),),)
    assert parse("a OR").groups == ((Phrase(("a",)),), (Phrase(("or",)),))


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ('"unbalanced', "a quote is not closed"),
        ('ok "still open', "a quote is not closed"),
        ("", "nothing to search for"),
        ("  !!! *** ", "nothing to search for"),
        ("-draft -notes", "only excluded words"),
        ("x" * 513, "longer than 512"),
        (" ".join(f"w{i}" for i in range(17)), "more than 16"),
    ],
)
def test_bad_queries(query: str, reason: str) -> None:
    """An unbalanced quote, nothing searchable or an oversized query is a BadQuery."""
    with pytest.raises(BadQuery, match=reason):
        parse(query)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries)
def test_no_query_crashes_fts5(query: str) -> None:
    """Whatever the input, it is a BadQuery or a MATCH expression FTS5 runs."""
    try:
        parsed = parse(query)
    except BadQuery:
        return
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE messages_fts USING fts5(words, tokenize='ascii')")
    db.execute("INSERT INTO messages_fts (rowid, words) VALUES (1, 'a b c')")
    db.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (fts5(parsed),))
    assert "".join(snippet(query, parsed)) == query[:200] or len(query) > 200


@pytest.mark.backends("postgres")
async def test_no_query_crashes_tsquery(backend: Backend) -> None:
    """Random nasty queries are BadQuery or a tsquery PostgreSQL parses and runs."""
    rng = random.Random(16)
    samples = ["".join(rng.choice(NASTY) for _ in range(rng.randint(1, 40))) for _ in range(400)]
    async with opened(database_url(backend.db)) as log, log.engine.connect() as conn:
        checked = 0
        for sample in samples:
            try:
                parsed = parse(sample)
            except BadQuery:
                continue
            statement = text("SELECT CAST(:v AS tsvector) @@ CAST(:q AS tsquery)")
            await conn.execute(statement, {"v": tsvector(sample), "q": tsquery(parsed)})
            checked += 1
        assert checked > 100


def test_snippet_marks_words_as_written() -> None:
    """A snippet shows the original text, its matched words at odd positions."""
    parsed = parse("cafe depl*")
    assert snippet("At the Café we deploy", parsed) == ["At the ", "Café", " we ", "deploy", ""]
    long = "x " * 300 + "Café" + " y" * 300
    segments = snippet(long, parsed)
    assert segments[1] == "Café" and segments[0].startswith("…") and segments[2].endswith("…")
    assert sum(map(len, segments)) <= 202
    assert snippet("nothing here", Query(((Phrase(("zzz",)),),))) == ["nothing here"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F) | st.sampled_from(NASTY), max_size=120))
@example("x" * 100 + " Short, WORDS; 42")
@example("Café " + "y" * 70)
def test_fts5_indexes_exactly_the_python_tokens(text_: str) -> None:
    """What the writer gives FTS5 (raw ASCII, else folded) is indexed as exactly tokens()."""
    from chatlog.log.words import for_ascii_tokenizer, tokens

    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE f USING fts5(words, tokenize='ascii', columnsize=0)")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, 'instance')")
    db.execute("INSERT INTO f (rowid, words) VALUES (1, ?)", (for_ascii_tokenizer(text_),))
    indexed = [term for (term,) in db.execute("SELECT term FROM v ORDER BY offset")]
    assert indexed == tokens(text_)
