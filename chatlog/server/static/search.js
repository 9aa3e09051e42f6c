// Search on the chatlog page: the search box, the results, and a hit shown in its context.
//
// It talks over chat.js's socket ({"Search":...} and {"History":{"Around":ID}}) and gets the
// answers chat.js leaves to it. Safety as in chat.js: queries, snippets and messages reach the
// DOM only as text nodes (the matched words in <mark> elements made here), never as HTML.
"use strict";

(() => {
  const page = window.chatlogPage;
  if (!page) return;
  const PAGE = 20;
  const CONTEXT = 40;

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("search-form"),
    input: $("search"),
    panel: $("search-panel"),
    status: $("search-status"),
    results: $("search-results"),
    more: $("search-more"),
    context: $("search-context"),
    back: $("search-back"),
    live: $("search-live"),
  };

  const state = {
    query: "", // the query the results are for
    oldest: null, // the lowest ID shown: "More results" asks Before it
    count: 0,
    complete: true,
    waiting: false, // a Search is on its way
    around: null, // the ID whose context was asked for
  };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A snippet is ["plain", "matched", "plain", ...]: matched words at odd positions.
  function renderSnippet(segments, fallback) {
    const p = el("p", "text snippet");
    p.dir = "auto";
    if (!Array.isArray(segments)) {
      p.textContent = fallback;
      return p;
    }
    segments.forEach((segment, i) => {
      if (typeof segment !== "string" || segment === "") return;
      p.append(i % 2 === 1 ? el("mark", null, segment) : document.createTextNode(segment));
    });
    return p;
  }

  function open(view) {
    page.conversation.hidden = true;
    ui.panel.hidden = false;
    ui.results.hidden = view !== "results";
    ui.more.hidden = view !== "results" || state.complete;
    ui.context.hidden = view !== "context";
    ui.back.hidden = view !== "context";
  }

  function backToLive() {
    ui.panel.hidden = true;
    page.conversation.hidden = false;
    page.conversation.scrollTop = page.conversation.scrollHeight;
    ui.input.focus();
  }

  function search(query, before) {
    const frame = { Search: { Query: query, Limit: PAGE } };
    if (before !== null) frame.Search.Before = before;
    if (!page.sendFrame(frame)) {
      ui.status.textContent = "Not connected; try again when the page is connected.";
      open("results");
      return;
    }
    state.waiting = true;
    if (before === null) {
      state.query = query;
      state.count = 0;
      state.oldest = null;
      ui.results.replaceChildren();
    }
    ui.status.textContent = "Searching…";
    open("results");
  }

  function statusLine() {
    const what = `“${state.query}”`;
    if (state.count === 0) return `No messages match ${what}.`;
    const more = state.complete ? "" : " so far";
    return `${state.count} message${state.count === 1 ? "" : "s"} match ${what}${more}, newest first.`;
  }

  function onSearch(frame) {
    state.waiting = false;
    const messages = Array.isArray(frame.Messages) ? frame.Messages : [];
    for (const message of messages) {
      if (message === null || typeof message !== "object") continue;
      const text = page.decodeBody(message.Message);
      const li = page.renderMessage(message, text);
      li.classList.add("hit");
      const body = li.querySelector(".text");
      body.replaceWith(renderSnippet(message.Snippet, text ?? ""));
      if (Number.isSafeInteger(message.ID)) {
        li.dataset.id = String(message.ID);
        li.tabIndex = 0;
        li.title = "Show this message in its conversation";
        state.oldest = state.oldest === null ? message.ID : Math.min(state.oldest, message.ID);
      }
      ui.results.append(li);
      state.count += 1;
    }
    state.complete = frame.Complete !== false;
    ui.status.textContent = statusLine();
    open("results");
  }

  function showContext(id) {
    if (!page.sendFrame({ History: { Around: id, Limit: CONTEXT } })) return;
    state.around = id;
    ui.context.replaceChildren();
    ui.status.textContent = "Loading the conversation…";
    open("context");
  }

  function onAround(frame) {
    if (frame.Around !== state.around) return;
    const messages = Array.isArray(frame.Messages) ? frame.Messages : [];
    let target = null;
    for (const message of messages) {
      if (message === null || typeof message !== "object") continue;
      const li = page.renderMessage(message, page.decodeBody(message.Message));
      if (Number.isSafeInteger(message.ID)) li.dataset.id = String(message.ID);
      if (message.ID === state.around) {
        li.classList.add("found");
        target = li;
      }
      ui.context.append(li);
    }
    ui.status.textContent = "The message in its conversation (highlighted).";
    open("context");
    if (target) {
      target.scrollIntoView({ block: "center" });
      target.tabIndex = -1;
      target.focus();
    }
  }

  page.onFrame((frame) => {
    if (frame.Type === "Search") onSearch(frame);
    else onAround(frame);
  });

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = ui.input.value.trim();
    if (query === "") {
      backToLive();
      return;
    }
    search(query, null);
  });

  function pick(event) {
    const li = event.target.closest("li.hit");
    if (li && li.dataset.id) showContext(Number(li.dataset.id));
  }

  ui.results.addEventListener("click", pick);
  ui.results.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      pick(event);
    }
  });
  ui.more.addEventListener("click", () => {
    if (!state.waiting && state.oldest !== null) search(state.query, state.oldest);
  });
  ui.back.addEventListener("click", () => {
    ui.status.textContent = statusLine();
    open("results");
  });
  ui.live.addEventListener("click", backToLive);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.panel.hidden) backToLive();
  });
})();
