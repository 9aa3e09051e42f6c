"""The chat page in a real Chromium: edit and delete one's own messages, the change shown in
place on every open page, live and after a reconnect."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Locator, expect

from tests.backends import rows
from tests.helpers import ServerProcess, run_cli
from tests.test_page import ChatPage, Pages, Site, browser, chromium, pages, shows, site
from tests.wsclients import ChatClient, b64

__all__ = ["browser", "chromium", "pages", "site"]  # the fixtures, shared with test_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.backends("sqlite"),
]


def body(page: ChatPage, text: str) -> Locator:
    """The message on ``page`` whose text is ``text``."""
    return page.page.locator("#chat li", has=page.page.locator(".text", has_text=text))


async def test_edit_and_delete_own_messages_on_every_page(
    pages: Pages, site: Site, db_path: Path
) -> None:
    """The sender edits (button, then the Up arrow) and deletes; both pages show "edited" and
    "message deleted" in place; only the sender's messages have the buttons."""
    alice = await pages.open(site.page("e"))
    bob = await pages.open(site.page("e"))
    await alice.set_name("alice")
    await alice.say("helo wrld")
    await alice.say("second thought")
    await expect(bob.page.locator("#chat .text")).to_have_text(["helo wrld", "second thought"])
    assert await bob.page.locator("#chat .actions").count() == 0
    await body(alice, "helo wrld").locator("button.edit").click()
    await expect(alice.page.locator("#text")).to_have_value("helo wrld")
    await alice.page.fill("#text", "hello world")
    await alice.page.press("#text", "Enter")
    for page in (alice, bob):
        await expect(page.page.locator("#chat .text")).to_have_text(
            ["hello world", "second thought"]
        )
        await expect(page.page.locator("#chat li").first.locator(".edited")).to_have_text("edited")
    await alice.page.press("#text", "ArrowUp")  # the empty input edits the last own message
    await expect(alice.page.locator("#text")).to_have_value("second thought")
    await alice.page.press("#text", "Escape")
    await expect(alice.page.locator("#text")).to_have_value("")
    await body(alice, "second thought").locator("button.delete").click()
    for page in (alice, bob):
        await expect(page.page.locator("#chat .text")).to_have_text(
            ["hello world", "message deleted"]
        )
        await expect(page.page.locator("#chat li.deleted")).to_have_count(1)
        page.assert_clean()
    assert await alice.page.locator("#chat li.deleted .actions").count() == 0
    stored = rows(db_path, "select text, kind from messages where room = 'e' order by id")
    assert stored == [
        ("hello world", "chat"),
        ("", "chat"),
        ("hello world", "edit"),
        ("", "delete"),
    ]
    late = await pages.open(site.page("e"))  # a fresh page: History in the current state
    await expect(late.page.locator("#chat .text")).to_have_text(["hello world", "message deleted"])
    await expect(late.page.locator("#chat .edited")).to_have_count(1)


async def test_changes_while_away_show_after_reconnect(pages: Pages, tmp_path: Path) -> None:
    """A page that was offline while messages were edited, deleted and redacted shows each
    change in place once it has resumed, every message once."""
    db = tmp_path / "away.db"
    server = ServerProcess(db).start()
    try:
        url = f"{server.http}/?room=r"
        async with aiohttp.ClientSession() as http:
            raw = await ChatClient.connect(http, server.url + "?room=r")
            for text in ("keep me", "redact me"):
                await raw.say(text)
                await raw.recv_chat(text)
            page = await pages.open(url)
            await shows(page.texts, ["keep me", "redact me"])
            await page.page.context.set_offline(True)  # it waits for "online" to reconnect
            server.kill()
            await expect(page.page.locator("#headline")).to_have_attribute(
                "data-state", "disconnected"
            )
            server.start()
            writer = await ChatClient.connect(http, server.url + "?room=r")
            ids = []
            for text in ("typo", "gone"):
                await writer.say(text)
                ids.append((await writer.recv_chat(text))["ID"])
            await writer.ws.send_str(json.dumps({"Edit": {"ID": ids[0], "Message": b64("fixed")}}))
            await writer.recv("Edit")
            await writer.ws.send_str(json.dumps({"Delete": {"ID": ids[1]}}))
            await writer.recv("Delete")
            (redacted,) = rows(db, "select id from messages where text = 'redact me'")[0]
            result = await asyncio.to_thread(run_cli, "redact", str(redacted), "--db", str(db))
            assert result.exit_code == 0, result.output
            await page.page.context.set_offline(False)
            await page.connected()
        await shows(page.texts, ["keep me", "message deleted", "fixed", "message deleted"])
        await expect(page.page.locator("#chat .edited")).to_have_count(1)
        await expect(page.page.locator("#chat li.deleted")).to_have_count(2)
        assert any("since=" in s for s in page.sockets)
        page.assert_clean("ERR_CONNECTION_REFUSED")
    finally:
        server.kill()
