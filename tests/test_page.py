"""The chat page in a real Chromium against a real server: chat, names, history, safety, Unicode,
reconnects, the original page's frames, keyboard and phone width."""

from __future__ import annotations

import asyncio
import base64
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, WebSocket, async_playwright, expect

from chatlog.server.page import CONTENT_SECURITY_POLICY
from chatlog.settings import Settings
from tests.backends import rows
from tests.helpers import ServerProcess, eventually, run_cli, skip_or_fail, start_server
from tests.wsclients import ChatClient, b64

# One Chromium for the whole module (launching it is most of a test's cost), so the tests share
# the module's event loop; every test still gets its own server, database and browser contexts.
# The page's behaviour does not depend on the backend (test_chat and test_resume run on both).
pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.backends("sqlite"),
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAIT = 10.0
T = TypeVar("T")

expect.set_options(timeout=WAIT * 1000)


async def shows(read: Callable[[], Awaitable[T]], want: T) -> None:
    """Wait until ``read()`` returns ``want`` (the page catches up); fail showing the last value."""

    async def check() -> None:
        assert await read() == want

    await eventually(check, timeout=WAIT)


class ChatPage:
    """One browser tab on the chat page, in its own context (its own localStorage)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.sockets: list[str] = []
        #: Every frame the page sent, on any of its sockets.
        self.sent: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._console)
        page.on("websocket", self._websocket)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    def _console(self, message: Any) -> None:
        if message.type == "error" and "favicon" not in message.text:
            self.errors.append(message.text)

    def _websocket(self, ws: WebSocket) -> None:
        self.sockets.append(ws.url)
        ws.on("framesent", lambda payload: self.sent.append(str(payload)))

    async def connected(self) -> None:
        await expect(self.page.locator("#headline")).to_have_attribute("data-state", "connected")

    async def say(self, text: str) -> None:
        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")

    async def set_name(self, name: str) -> None:
        await self.page.fill("#name", name)
        await self.page.press("#name", "Enter")

    async def texts(self) -> list[str]:
        return await self.page.locator("#chat .text").all_text_contents()

    async def messages(self) -> list[tuple[int, str, str]]:
        """(ID, author, text) of every message shown, top to bottom."""
        found = await self.page.eval_on_selector_all(
            "#chat li",
            "items => items.map(li => [Number(li.dataset.id),"
            " li.querySelector('.author').textContent, li.querySelector('.text').textContent])",
        )
        return [(int(i), a, t) for i, a, t in found]

    async def users(self) -> list[str]:
        return await self.page.locator("#userlist li").all_text_contents()

    async def scroll(self) -> dict[str, float]:
        return await self.page.eval_on_selector(  # type: ignore[no-any-return]
            "#conversation",
            "s => ({top: s.scrollTop, gap: s.scrollHeight - s.scrollTop - s.clientHeight})",
        )

    def assert_clean(self, *expected: str) -> None:
        """No JavaScript error, no console error (but ``expected`` ones), no dialog happened."""
        errors = [e for e in self.errors if not any(x in e for x in expected)]
        assert errors == [] and self.dialogs == []


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium (Playwright's own browser download cannot work here)."""
    if not CHROMIUM.exists():
        skip_or_fail("install Debian's chromium: apt-get install chromium")
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    """A headless Chromium driven by Playwright, shared by the module's tests."""
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Pages:
    """Opens chat pages, each in its own browser context (own localStorage); closes them all."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []

    async def open(self, url: str, *, width: int = 1000, height: int = 640) -> ChatPage:
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        self.contexts.append(context)
        chat = ChatPage(await context.new_page())
        await chat.page.goto(url)
        await chat.connected()
        return chat


@pytest_asyncio.fixture(loop_scope="module")
async def pages(browser: Browser) -> AsyncIterator[Pages]:
    opened = Pages(browser)
    try:
        yield opened
    finally:
        for context in opened.contexts:
            await context.close()


class Site:
    """A real chat server on a loopback port, over the test's own SQLite file."""

    def __init__(self, port: int) -> None:
        self.http = f"http://127.0.0.1:{port}"

    def page(self, room: str | None = None) -> str:
        return f"{self.http}/" + (f"?room={room}" if room else "")

    def ws(self, room: str) -> str:
        return f"ws://{self.http.removeprefix('http://')}/ws?room={room}"


@pytest_asyncio.fixture(loop_scope="module")
async def site(settings: Settings) -> AsyncIterator[Site]:
    """The chat server on 127.0.0.1 on the module's loop (where the browser lives)."""
    server = await start_server(settings)
    try:
        assert server.port is not None
        yield Site(server.port)
    finally:
        await server.close()


# --- the page as served -----------------------------------------------------------------------


async def test_page_and_files_are_served_with_a_strict_policy(site: Site) -> None:
    """GET / and its three files come from the package with CSP and nosniff; others are 404."""
    async with aiohttp.ClientSession() as http:
        for path, kind in [
            ("/", "text/html"),
            ("/?room=lobby", "text/html"),
            ("/static/chat.js", "text/javascript"),
            ("/static/chat.css", "text/css"),
            ("/static/favicon.svg", "image/svg+xml"),
        ]:
            async with http.get(site.http + path) as resp:
                body = await resp.text()
                assert resp.status == 200 and resp.content_type == kind, path
                assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert "__MAX_MESSAGE_BYTES__" not in body
        async with http.get(site.page()) as resp:
            html = await resp.text()
        assert 'data-max-message-bytes="65536"' in html
        assert "<script>" not in html and "style=" not in html, "nothing inline"
        for path in ["/static/index.html", "/static/../app.py", "/static/nope.js"]:
            async with http.get(site.http + path) as resp:
                assert resp.status == 404, path
        async with http.get(site.page(), params={"room": "x" * 65}) as resp:
            assert resp.status == 400 and "room" in await resp.text()


# --- chatting ---------------------------------------------------------------------------------


async def test_two_pages_chat_and_screenshot(pages: Pages, site: Site, db_path: Path) -> None:
    """Two pages chat: both show every message once, by author, in ID order (screenshot saved)."""
    alice = await pages.open(site.page("tea"))
    await alice.say("alias alice")  # the original page's command
    await alice.say("Hi! Is anyone here?")
    bob = await pages.open(site.page("tea"))
    await bob.set_name("bob")  # the visible name field
    await expect(bob.page.locator("#chat .text")).to_have_text(["Hi! Is anyone here?"])
    # Each line is sent once the one before it has come back: two pages' sockets are
    # independent, so without the wait their frames may reach the server in either order.
    await bob.say("Hello alice, I just joined 👋")
    await expect(alice.page.locator("#chat .text")).to_have_count(2)
    await alice.say("Welcome! Scroll up for older messages.")
    await expect(bob.page.locator("#chat .text")).to_have_count(3)
    await bob.say("Thanks. This works with the keyboard too.")
    await expect(alice.page.locator("#chat .text")).to_have_count(4)
    stored = [
        (i, a, t) for i, a, t in rows(db_path, "select id, author, text from messages order by id")
    ]
    assert [a for _, a, _ in stored] == ["alice", "bob", "alice", "bob"]
    for page in (alice, bob):
        await shows(page.messages, stored)
        await expect(page.page.locator("#userlist li")).to_have_text(["alice", "bob"])
        await expect(page.page.locator("#outbox-box")).to_be_hidden()
        page.assert_clean()
    assert await alice.page.locator("#chat li.mine").count() == 2, "own messages are marked"
    headline = await alice.page.text_content("#headline") or ""
    assert headline.startswith("CHAT - connected - ") and len(headline.split(" - ")[-1]) == 24
    ARTIFACTS.mkdir(exist_ok=True)
    await bob.page.screenshot(path=str(ARTIFACTS / "two-users.png"))
    phone = await pages.open(site.page("tea"), width=375, height=720)
    await phone.set_name("carol")
    await shows(phone.messages, stored)
    await phone.page.screenshot(path=str(ARTIFACTS / "two-users-phone.png"))


async def test_userlist_follows_join_rename_leave_and_reload(pages: Pages, site: Site) -> None:
    """The user list updates live on join, rename and leave; a reload brings the name back."""
    alice = await pages.open(site.page())
    await alice.set_name("alice")
    await expect(alice.page.locator("#userlist li")).to_have_text(["alice"])
    bob = await pages.open(site.page())
    await bob.say("alias bob")
    await expect(alice.page.locator("#userlist li")).to_have_text(["alice", "bob"])
    await expect(alice.page.locator("#user-count")).to_have_text("2")
    await bob.say("alias Robert Smith")  # the rest of the line is the name
    for page in (alice, bob):
        await expect(page.page.locator("#userlist li")).to_have_text(["alice", "Robert Smith"])
    await expect(bob.page.locator("#userlist li.me")).to_have_text("Robert Smith")
    await bob.page.reload()  # localStorage keeps the name; the page sends it again
    await bob.connected()
    await expect(bob.page.locator("#name")).to_have_value("Robert Smith")
    await expect(alice.page.locator("#userlist li")).to_have_text(["alice", "Robert Smith"])
    await bob.page.context.close()
    await expect(alice.page.locator("#userlist li")).to_have_text(["alice"])
    alice.assert_clean()


async def test_late_page_sees_history_and_pages_older_on_scroll(pages: Pages, site: Site) -> None:
    """A late page shows the newest 50 at the bottom; scrolling to the top pages in older ones;
    it follows new messages unless the reader scrolled up."""
    async with aiohttp.ClientSession() as http:
        writer = await ChatClient.connect(http, site.ws("hist"))
        await _history_and_scrolling(pages, site, writer)


async def _history_and_scrolling(pages: Pages, site: Site, writer: ChatClient) -> None:
    await writer.alias("writer")
    for n in range(1, 121):
        await writer.say(f"message {n}")
    await writer.chats(120)
    page = await pages.open(site.page("hist"))
    await shows(page.texts, [f"message {n}" for n in range(71, 121)])
    assert (await page.scroll())["gap"] < 2, "the newest message is in view"
    for upto in (21, 1):
        await page.page.eval_on_selector("#conversation", "s => { s.scrollTop = 0; }")
        await shows(page.texts, [f"message {n}" for n in range(upto, 121)])
        assert (await page.scroll())["top"] > 0, "the message that was on top stays in view"
    await page.page.eval_on_selector("#conversation", "s => { s.scrollTop = 0; }")
    await expect(page.page.locator("#older-status")).to_have_text(
        "This is the start of the conversation."
    )
    ids = [i for i, _, _ in await page.messages()]
    assert ids == sorted(set(ids)) and len(ids) == 120

    await page.page.eval_on_selector("#conversation", "s => { s.scrollTop = s.scrollHeight; }")
    await writer.say("live while at the bottom")
    await expect(page.page.locator("#chat .text").last).to_have_text("live while at the bottom")
    await eventually(lambda: _gap_small(page), timeout=WAIT)
    await page.page.eval_on_selector("#conversation", "s => { s.scrollTop = 1500; }")
    await writer.say("live while reading older ones")
    await expect(page.page.locator("#chat .text").last).to_have_text(
        "live while reading older ones"
    )
    assert (await page.scroll())["top"] == 1500, "a reader who scrolled up is left alone"
    await expect(page.page.locator("#jump")).to_be_visible()
    await page.page.click("#jump")
    await eventually(lambda: _gap_small(page), timeout=WAIT)
    page.assert_clean()


async def _gap_small(page: ChatPage) -> bool:
    return (await page.scroll())["gap"] < 2


# --- safety and text ---------------------------------------------------------------------------

XSS_MESSAGES = [
    "<script>window.__xss = 1; alert('script')</script>",
    "<img src=x onerror=\"window.__xss = 2; alert('img')\">",
    "<svg onload=alert('svg')><circle r=5></svg>",
    "<a href=\"javascript:alert('link')\">click me</a>",
    "javascript:alert('bare url')",
    '"><iframe src="javascript:alert(\'frame\')"></iframe>',
    "</p></li></ol><b>broken <i>markup",
    "<style>body { display: none }</style>",
    "&lt;script&gt; &amp;amp; &#x3C;b&#x3E;",
    '<div onmouseover="alert(\'hover\')" style="position:fixed;inset:0">x</div',
]
XSS_NAMES = [
    "<img src=x onerror=alert('name')>",
    "<script>alert('name')</script>",
    '"><svg onload=alert(1)>',
]
#: The only elements the page itself builds for messages and users.
PAGE_TAGS = {"LI", "DIV", "SPAN", "TIME", "P"}
#: The page's own buttons on the sender's messages (Edit, Delete), the only other elements.
OWN_BUTTONS = ".actions > button.edit, .actions > button.delete"


async def test_xss_corpus_shows_literally_and_never_runs(
    pages: Pages, site: Site, db_path: Path
) -> None:
    """Script tags, handlers, javascript: URLs and broken markup as messages and names are shown
    as typed: no dialog, no injected element, no flag set; CSP blocks inline script."""
    sender = await pages.open(site.page("xss"))
    viewer = await pages.open(site.page("xss"))
    for name in XSS_NAMES:
        await sender.set_name(name)
        await expect(viewer.page.locator("#userlist li")).to_have_text([name])
        await sender.say(f"said by {name}")
    for text in XSS_MESSAGES:
        await sender.say(text)
    expected = [f"said by {n}" for n in XSS_NAMES] + XSS_MESSAGES
    for page in (sender, viewer):
        await shows(page.texts, expected)
        authors = await page.page.locator("#chat .author").all_text_contents()
        assert authors == [*XSS_NAMES, *[XSS_NAMES[-1]] * len(XSS_MESSAGES)]
        tags = await page.page.eval_on_selector_all(
            f"#chat *:not({OWN_BUTTONS}), #userlist *",
            "nodes => [...new Set(nodes.map(n => n.tagName))]",
        )
        assert set(tags) <= PAGE_TAGS, tags
        await page.page.hover("#chat li:last-child")
        assert await page.page.evaluate("window.__xss") is None
        assert await page.page.is_visible("#text")
        page.assert_clean()
    assert [t for (t,) in rows(db_path, "select text from messages order by id")] == expected

    # The policy is enforced by the browser: an inline script added to the DOM does not run.
    await viewer.page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__inline = 1'; document.body.append(s); }"
    )
    assert await viewer.page.evaluate("window.__inline") is None


UNICODE_TEXTS = [
    "emoji 😀 👍🏽 👩‍👩‍👧‍👦 🇯🇵",
    "CJK 漢字 かな カナ 한국어",
    "combining e\u0301 a\u0308 n\u0303 o\u0302\u0323",  # NFD, must not be normalised
    "RTL עברית العربية مرحبا",
    "mixed direction: abc \u200fשלום\u200e 123",
    "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 and a zero\u200dwidth joiner",
    "tab\tinside and \ufeff a BOM",
]


async def test_unicode_round_trip_to_another_page_and_the_text_column(
    pages: Pages, site: Site, db_path: Path
) -> None:
    """Emoji, CJK, combining marks and RTL arrive intact in another page and in `text`."""
    sender = await pages.open(site.page("uni"))
    viewer = await pages.open(site.page("uni"))
    await sender.set_name("Zoë 山田 🙂")
    await expect(viewer.page.locator("#userlist li")).to_have_text(["Zoë 山田 🙂"])
    for text in UNICODE_TEXTS:
        await sender.say(text)
    await shows(viewer.texts, UNICODE_TEXTS)
    stored = rows(db_path, "select author, text, message from messages order by id")
    assert [t for _, t, _ in stored] == UNICODE_TEXTS
    assert {a for a, _, _ in stored} == {"Zoë 山田 🙂"}
    assert [base64.b64decode(m).decode("utf-8") for _, _, m in stored] == UNICODE_TEXTS
    await expect(viewer.page.locator("#chat .author").first).to_have_text("Zoë 山田 🙂")
    viewer.assert_clean()


async def test_input_rules_empty_alias_words_and_refused_names(
    pages: Pages, site: Site, db_path: Path
) -> None:
    """Empty input sends nothing; only `alias NAME` renames; words starting with alias are chat."""
    page = await pages.open(site.page("rules"))
    await page.say("")
    await page.say("   ")
    await page.say("alias   ")  # no name: a hint, nothing sent
    await expect(page.page.locator("#notice-text")).to_contain_text("Type a name after alias")
    await page.say("aliases are fun")
    await page.say("alias")
    await page.say("Alias bob")
    await shows(page.texts, ["aliases are fun", "alias", "Alias bob"])
    assert await page.users() == [], "none of those set a name"
    await page.say("bad \x07 bell")
    await expect(page.page.locator("#notice-text")).to_contain_text("control character")
    await expect(page.page.locator("#text")).to_have_value("bad \x07 bell")  # kept to fix
    assert rows(db_path, "select text from messages order by id") == [
        ("aliases are fun",),
        ("alias",),
        ("Alias bob",),
    ]
    page.assert_clean()


async def test_store_failure_is_told_in_plain_words_and_retried_once(
    pages: Pages, site: Site, db_path: Path
) -> None:
    """A store-failed Error frame is shown in words; Retry sends the same nonce: stored once."""
    page = await pages.open(site.page("fail"))
    await page.set_name("dora")
    await expect(page.page.locator("#userlist li")).to_have_text(["dora"])
    blocker = sqlite3.connect(db_path, timeout=1)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # the server's writer times out on its lock
        await page.say("this must not be lost")
        await expect(page.page.locator("#notice-text")).to_contain_text(
            "could not save your message", timeout=15_000
        )
        await expect(page.page.locator("#outbox .status")).to_have_text("not saved")
    finally:
        blocker.rollback()
        blocker.close()
    await page.page.click("#retry")
    await shows(page.texts, ["this must not be lost"])
    await expect(page.page.locator("#outbox-box")).to_be_hidden()
    assert rows(db_path, "select text from messages") == [("this must not be lost",)]


# --- reconnecting ------------------------------------------------------------------------------


async def test_server_restart_every_message_once_in_order(pages: Pages, tmp_path: Path) -> None:
    """Kill the server under two open pages, restart it on the same port and db, send from a raw
    client: each page resumes (since + epoch), shows every message once, in order, with names."""
    db = tmp_path / "restart.db"
    server = ServerProcess(db).start()
    try:
        url = f"{server.http}/?room=r"
        alice = await pages.open(url)
        bob = await pages.open(url)
        await alice.set_name("alice")
        await bob.set_name("bob")
        await alice.say("before 1")
        await bob.say("before 2")
        await shows(alice.texts, ["before 1", "before 2"])

        # bob's browser goes offline: it waits for "online", so it surely misses "after 1-5";
        # alice retries with backoff and comes back whenever the server is up again.
        await bob.page.context.set_offline(True)
        server.kill()
        await expect(alice.page.locator("#headline")).to_have_attribute(
            "data-state", re.compile("^(reconnecting|error)$")
        )
        await expect(bob.page.locator("#headline")).to_have_attribute("data-state", "disconnected")
        await alice.say("typed while the server was down")
        await expect(alice.page.locator("#outbox .text")).to_have_text(
            ["typed while the server was down"]
        )
        server.start()
        async with aiohttp.ClientSession() as http:
            raw = await ChatClient.connect(http, server.url + "?room=r")
            for n in range(1, 6):
                await raw.say(f"after {n}")
            await raw.recv_chat("after 5")
            await bob.page.context.set_offline(False)
            for page in (alice, bob):
                await page.connected()
            for n in range(6, 11):
                await raw.say(f"after {n}")
            await raw.recv_chat("after 10")  # committed, so the log holds them all
            await raw.close()
        await expect(alice.page.locator("#outbox-box")).to_be_hidden()

        stored = rows(db, "select id, author, text from messages where room = 'r' order by id")
        assert len(stored) == 13
        for page in (alice, bob):
            await shows(page.messages, [(i, a, t) for i, a, t in stored])
            # Both names are back (the crash forgot them), in the order the pages returned.
            await shows(lambda p=page: _sorted(p.users()), ["alice", "bob"])
            resumed = [s for s in page.sockets if "since=" in s]
            assert resumed and "epoch=" in resumed[-1], page.sockets
            page.assert_clean("ERR_CONNECTION_REFUSED")  # Chromium logs each failed retry
    finally:
        server.kill()


async def test_resume_past_the_limit_and_a_replaced_log(pages: Pages, tmp_path: Path) -> None:
    """Too many missed messages: the page says so and shows the newest page, each once; a
    replaced database (new epoch): the page drops the old log and shows the new one."""
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    server = ServerProcess(first, "--resume-max", "5").start()
    try:
        page = await pages.open(f"{server.http}/?room=big")
        await page.say("seen before the drop")
        await shows(page.texts, ["seen before the drop"])
        # Offline, the page waits for the browser's "online" event instead of retrying, so the
        # messages below are surely sent while it is away.
        await page.page.context.set_offline(True)
        server.kill()
        await expect(page.page.locator("#headline")).to_have_attribute("data-state", "disconnected")
        await expect(page.page.locator("#headline")).to_contain_text("offline")
        server.start()
        async with aiohttp.ClientSession() as http:
            raw = await ChatClient.connect(http, server.url + "?room=big")
            for n in range(1, 13):
                await raw.say(f"missed {n}")
            await raw.recv_chat("missed 12")
            await raw.close()
        await page.page.context.set_offline(False)
        await page.connected()
        await expect(page.page.locator("#notice-text")).to_contain_text("More than 5 messages")
        stored = rows(first, "select id, author, text from messages order by id")
        await shows(page.messages, [(i, a, t) for i, a, t in stored])
        assert len(stored) == 13

        server.kill()
        server.db = str(second)  # same port, another log: a new epoch
        server.start()
        async with aiohttp.ClientSession() as http:
            raw = await ChatClient.connect(http, server.url + "?room=big")
            await raw.say("first message of the new log")
            await raw.recv_chat("first message of the new log")
            await raw.close()
        await page.connected()
        await expect(page.page.locator("#notice-text")).to_contain_text("log was replaced")
        await shows(page.messages, [(1, "unknown", "first message of the new log")])
        page.assert_clean("ERR_CONNECTION_REFUSED")
    finally:
        server.kill()


async def purge(db: Path, room: str, keep: int) -> None:
    """``chatlog purge`` as a real process, keeping the newest ``keep`` messages of ``room``."""
    args = ("purge", "--db", str(db), "--room", room, "--retain-messages", str(keep))
    done = await asyncio.to_thread(run_cli, *args, process=True)
    assert done.exit_code == 0, done.output


async def test_history_and_resume_across_retention(pages: Pages, tmp_path: Path) -> None:
    """Purged history: the page says older messages were removed and stops asking; a resume
    past the purge shows what is left, each once, and says some were removed."""
    db = tmp_path / "retention.db"
    server = ServerProcess(db).start()
    try:
        async with aiohttp.ClientSession() as http:
            raw = await ChatClient.connect(http, server.url + "?room=ret")
            for n in range(1, 81):
                await raw.say(f"m{n}")
            await raw.recv_chat("m80")
            await raw.close()
        await purge(db, "ret", 30)
        page = await pages.open(f"{server.http}/?room=ret")
        await shows(page.texts, [f"m{n}" for n in range(51, 81)])
        await expect(page.page.locator("#older-status")).to_have_text(
            "Older messages were removed by the server's retention."
        )
        await expect(page.page.locator("#older")).to_be_hidden()

        await page.page.context.set_offline(True)
        server.kill()
        await expect(page.page.locator("#headline")).to_have_attribute("data-state", "disconnected")
        server.start()
        async with aiohttp.ClientSession() as http:
            raw = await ChatClient.connect(http, server.url + "?room=ret")
            for n in range(81, 121):
                await raw.say(f"m{n}")
            await raw.recv_chat("m120")
            await raw.close()
        await purge(db, "ret", 10)  # m81 to m110 go before the page comes back
        await page.page.context.set_offline(False)
        await page.connected()
        await expect(page.page.locator("#notice-text")).to_contain_text("removed by the server")
        want = [f"m{n}" for n in [*range(51, 81), *range(111, 121)]]
        await shows(page.texts, want)
        ids = [i for i, _, _ in await page.messages()]
        assert ids == [*range(51, 81), *range(111, 121)]
        await page.page.eval_on_selector("#conversation", "s => { s.scrollTop = 0; }")
        await asyncio.sleep(0.3)
        asked = [f for f in page.sent if f.startswith('{"History"')]
        assert asked == ['{"History":{"Before":81,"Limit":50}}'], "only the first page was asked"
        page.assert_clean("ERR_CONNECTION_REFUSED")
    finally:
        server.kill()


async def _sorted(names: Awaitable[list[str]]) -> list[str]:
    return sorted(await names)


# --- the original page -------------------------------------------------------------------------


async def test_original_page_frames_still_work(pages: Pages, site: Site, db_path: Path) -> None:
    """The original page's frames, built with the browser's own btoa() on its path, reach ours."""
    page = await pages.open(site.page())
    await page.page.evaluate(
        """async () => {
            const ws = new WebSocket(`ws://${location.host}/csp/user/Chat.Server.cls`);
            await new Promise((ok) => { ws.onopen = ok; });
            ws.send(JSON.stringify({User: "olduser"}));
            ws.send(JSON.stringify({Message: btoa("café crème à Noël"), Author: "olduser"}));
            ws.send(JSON.stringify({}));  // what the original sends for a bare "alias"
            window.__original = ws;
        }"""
    )
    await expect(page.page.locator("#userlist li")).to_have_text(["olduser"])
    await shows(page.messages, [(1, "olduser", "café crème à Noël")])
    assert rows(db_path, "select author, text, message from messages") == [
        ("olduser", "café crème à Noël", b64("café crème à Noël", "latin-1"))
    ]
    assert await page.page.is_hidden("#notice"), "the other socket's error is not ours"
    await page.page.evaluate("() => window.__original.close()")
    await expect(page.page.locator("#userlist li")).to_have_count(0)
    page.assert_clean()


async def test_original_page_and_ours_show_a_broadcast(
    pages: Pages, site: Site, db_path: Path
) -> None:
    """`chatlog broadcast` reaches our page and the original page's handler (its onmessage
    and wrapmessage, as in ChatClient.csp) as a Chat frame from system with a Sent time."""
    page = await pages.open(site.page())
    await page.page.evaluate(
        """async () => {
            const list = document.createElement("ul");
            list.id = "original";
            document.body.append(list);
            const ws = new WebSocket(`ws://${location.host}/csp/user/Chat.Server.cls`);
            ws.onmessage = (event) => {  // the original's handler, minus jQuery
                const d = JSON.parse(event.data);
                if (d.Type !== "Chat") return;
                const li = document.createElement("li");
                li.textContent = d.Author + " | " + atob(d.Message) + " | " + d.Sent;
                list.append(li);
            };
            await new Promise((ok) => { ws.onopen = ok; });
            window.__original = ws;
        }"""
    )
    done = await asyncio.to_thread(
        run_cli, "broadcast", "--db", str(db_path), "--room", "main", "server restarts at noon"
    )
    assert done.exit_code == 0 and done.stdout == "1\tmain\n", done.output
    await shows(page.messages, [(1, "system", "server restarts at noon")])
    original = page.page.locator("#original li")
    await expect(original).to_have_text(
        [re.compile(r"^system \| server restarts at noon \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")]
    )
    await page.page.evaluate("() => window.__original.close()")
    page.assert_clean()


# --- keyboard and phone width ------------------------------------------------------------------


async def test_keyboard_only_at_phone_width(pages: Pages, site: Site) -> None:
    """At 375 px nothing scrolls sideways; Tab reaches the name and message fields with a
    visible focus ring, and Enter sets the name and sends."""
    page = await pages.open(site.page("kbd"), width=375, height=667)
    p = page.page
    assert await p.evaluate("document.activeElement.id") == "text", "the message box has focus"
    order: list[str] = []
    await p.evaluate("document.activeElement.blur()")
    for _ in range(8):
        await p.keyboard.press("Tab")
        order.append(await p.evaluate("document.activeElement.id || document.activeElement.type"))
    assert order.index("name") < order.index("conversation") < order.index("text"), order
    await focus_by_keyboard(p, "name", "Shift+Tab")
    outline = await p.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    await p.keyboard.type("kim")
    await p.keyboard.press("Enter")
    await expect(p.locator("#userlist li")).to_have_text(["kim"])
    await focus_by_keyboard(p, "text", "Tab")
    await p.keyboard.type("sent with the keyboard")
    await p.keyboard.press("Enter")
    await shows(page.texts, ["sent with the keyboard"])
    await expect(p.locator("#text")).to_have_value("")
    width = await p.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], "no sideways scrolling"
    box = await p.locator("#send-form button").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 375
    page.assert_clean()


async def focus_by_keyboard(page: Page, element_id: str, key: str) -> None:
    """Press ``key`` (a few times at most) until the element ``element_id`` has the focus."""
    for _ in range(10):
        if await page.evaluate("document.activeElement.id") == element_id:
            return
        await page.keyboard.press(key)
    raise AssertionError(f"{key} never reached #{element_id}")
