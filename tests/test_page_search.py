"""Search on the chat page, in a real Chromium: results with highlights built as text, nothing
in a query or a message ever runs, a hit shown in its context, and the way back to live."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import expect

from tests import test_page
from tests.test_page import ARTIFACTS, Pages, Site, shows
from tests.wsclients import ChatClient

# The page tests' fixtures: one Chromium per module, a server per test.
chromium = test_page.chromium
browser = test_page.browser
pages = test_page.pages
site = test_page.site

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.backends("sqlite"),
]

HOSTILE = [
    "<img src=x onerror=\"document.title='pwned';alert(1)\"> Café time",
    "<script>document.title='pwned';alert(2)</script> café script",
    'plain "café" <b>bold</b> & more',
]


async def _fill(site: Site, room: str, texts: list[str]) -> list[int]:
    async with aiohttp.ClientSession() as http:
        client = await ChatClient.connect(http, site.ws(room))
        ids = []
        for text in texts:
            await client.say(text)
            ids.append((await client.recv_chat(text))["ID"])
        await client.close()
    return ids


async def test_search_highlights_as_text_and_never_runs_markup(pages: Pages, site: Site) -> None:
    """Results show the matched words in <mark>; HTML in messages and in the query stays text."""
    ids = await _fill(site, "find", [*HOSTILE, "unrelated chatter", "other room? no"])
    chat = await pages.open(site.page("find"))
    p = chat.page
    await p.fill("#search", "cafe")
    await p.press("#search", "Enter")
    hits = p.locator("#search-results li.hit")
    await expect(hits).to_have_count(3)
    assert await p.locator("#conversation").is_hidden()
    await expect(p.locator("#search-results mark")).to_have_text(["café", "café", "Café"])
    shown = await hits.evaluate_all("items => items.map(li => Number(li.dataset.id))")
    assert shown == [ids[2], ids[1], ids[0]], "newest first"
    await expect(hits.nth(2).locator(".text")).to_have_text(HOSTILE[0])
    assert await p.locator("#search-panel img, #search-panel script, #search-panel b").count() == 0
    await expect(p.locator("#search-status")).to_contain_text("3 messages match")
    ARTIFACTS.mkdir(exist_ok=True)
    await p.screenshot(path=str(ARTIFACTS / "search-results.png"))

    # A query holding markup is sent as text and shown as text.
    query = "<b>bold</b> <img src=x onerror=alert(3)>"
    await p.fill("#search", query)
    await p.press("#search", "Enter")
    await expect(p.locator("#search-status")).to_contain_text(f"No messages match “{query}”")
    await p.fill("#search", "<b>bold</b>")
    await p.press("#search", "Enter")
    await expect(hits).to_have_count(1)
    await expect(p.locator("#search-results mark")).to_have_text(["b", "bold", "b"])
    assert await p.locator("#search-panel img").count() == 0
    assert await p.title() != "pwned"
    chat.assert_clean()


async def test_a_hit_in_context_and_back_to_live(pages: Pages, site: Site) -> None:
    """Clicking a result shows it among its neighbours; Back to live shows the live room again."""
    texts = [f"line {i}" for i in range(30)]
    texts[12] = "the needle is here"
    ids = await _fill(site, "ctx", texts)
    chat = await pages.open(site.page("ctx"))
    p = chat.page
    await p.fill("#search", "needle")
    await p.press("#search", "Enter")
    await expect(p.locator("#search-results li.hit")).to_have_count(1)
    await p.locator("#search-results li.hit").click()
    found = p.locator("#search-context li.found")
    await expect(found).to_have_attribute("data-id", str(ids[12]))
    context = await p.locator("#search-context li").evaluate_all(
        "items => items.map(li => Number(li.dataset.id))"
    )
    assert context == ids, "oldest first, around the hit (up to 20 each side)"
    assert await found.evaluate("li => li === document.activeElement")
    await p.click("#search-back")
    await expect(p.locator("#search-results li.hit")).to_have_count(1)
    await p.click("#search-live")
    assert await p.locator("#search-panel").is_hidden()
    assert await p.locator("#conversation").is_visible()
    await chat.say("live again")
    await shows(chat.texts, [*texts, "live again"])
    chat.assert_clean()


async def test_a_bad_query_is_explained(pages: Pages, site: Site) -> None:
    """An unbalanced quote gets the server's bad-query reason in the notice."""
    chat = await pages.open(site.page("bad"))
    p = chat.page
    await p.fill("#search", '"unclosed')
    await p.press("#search", "Enter")
    await expect(p.locator("#notice-text")).to_have_text(
        "That search could not be run. (a quote is not closed)"
    )
    chat.assert_clean()
