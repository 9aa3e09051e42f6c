// The chatlog page: plain modern JavaScript, no build step, no dependencies.
//
// Safety: every piece of chat data (names, message text, times, error text) reaches the DOM
// through textContent or an inert attribute, never innerHTML; the server's
// Content-Security-Policy forbids inline script as a second wall.
//
// On a fresh load the page connects without `since` and asks for the newest page of history
// with {"History":{"Before":Head+1}}: the server holds live messages above Head for the new
// socket, so the history answer and the live stream meet exactly, with no gap and no overlap.
// After a drop it reconnects with exponential backoff and `since=<last ID seen>&epoch=<log>`;
// the server replays what was missed, and every message is shown once, by ID, in ID order.
//
// Edits and deletions arrive as Edit and Delete frames (live and in a resume's backlog) and
// are applied in place; History and backlogs show messages already in their current state.
// A message this page sent can be edited (its Edit button, or Up in the empty input for the
// last one) and deleted. Without auth the server lets only the sending connection do that.
"use strict";

(() => {
  const HISTORY_PAGE = 50;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const NAME_KEY = "chatlog.name";
  const MAX_NAME_CHARS = 64;
  // Within this many pixels of an edge counts as "at" it.
  const EDGE_PX = 48;

  const $ = (id) => document.getElementById(id);
  const ui = {
    headline: $("headline"),
    room: $("room"),
    reconnect: $("reconnect"),
    nameForm: $("name-form"),
    name: $("name"),
    scroller: $("conversation"),
    older: $("older"),
    olderStatus: $("older-status"),
    chat: $("chat"),
    outboxBox: $("outbox-box"),
    outbox: $("outbox"),
    retry: $("retry"),
    jump: $("jump"),
    users: $("userlist"),
    userCount: $("user-count"),
    notice: $("notice"),
    noticeText: $("notice-text"),
    dismiss: $("dismiss"),
    sendForm: $("send-form"),
    text: $("text"),
  };

  const room = (new URLSearchParams(location.search).get("room") || "").trim() || "main";
  const maxBytes = Number(document.body.dataset.maxMessageBytes) || 65536;

  const state = {
    ws: null,
    wsid: "",
    epoch: null,
    // Every message with an ID up to coveredTo has reached this page (or is older history it
    // can page in); a resume asks for what comes after it.
    coveredTo: 0,
    // True once the newest page is in: from then on reconnects resume with `since`.
    loaded: false,
    // History requests sent on this socket and not answered yet, oldest first: the server
    // answers them in order. A request made before the conversation was cleared is marked
    // stale and its answer dropped.
    history: [], // {initial, head, stale}
    historyComplete: false,
    // The lowest ID of the contiguous stretch history has loaded: the next page asks for what
    // lies below it. (A single older message, such as the original of a retried send, must
    // not move it, or the messages between would never be asked for.)
    oldestLoaded: null,
    // Set when the oldest messages were purged by the server's retention, not merely absent.
    historyTruncated: false,
    attempt: 0,
    timer: null,
    everConnected: false,
    name: loadName(),
    // The last name the server took (it answers a refused one with an invalid-alias error).
    acceptedName: null,
    // Messages sent but not yet seen back from the server, by nonce: retried after a reconnect
    // with the same nonce, which the server stores at most once.
    pending: new Map(),
    mine: new Set(),
    scrollQueued: false,
    stick: true,
    // Whether the reader is at the newest message; kept across resizes (a notice appearing,
    // the phone keyboard opening) so the newest message stays in view.
    pinned: true,
    // The ID of the message being edited in the input, or null.
    editing: null,
  };
  const shown = new Map(); // message ID -> its <li>
  const ids = []; // the IDs in `shown`, ascending

  // --- text <-> base64, UTF-8 safe ---------------------------------------------------------

  function encodeText(text) {
    const bytes = new TextEncoder().encode(text);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  // Returns the text, or null when the body is not base64 at all.
  function decodeBody(body) {
    if (typeof body !== "string") return null;
    let binary;
    try {
      binary = atob(body);
    } catch {
      return null;
    }
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    try {
      return utf8.decode(bytes);
    } catch {
      // Not UTF-8: Latin-1 bytes from the original page's btoa(), as the server reads them.
      return binary;
    }
  }

  // --- small DOM helpers: text only --------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setState(name, detail) {
    ui.headline.dataset.state = name;
    document.body.dataset.state = name;
    // Reads "CHAT - connected - <WSID>" like the original; the detail is set in smaller type.
    const detailSpan = el("span", "detail", detail ? ` - ${detail}` : "");
    ui.headline.replaceChildren(`CHAT - ${name}`, detailSpan);
    document.title = name === "connected" ? `chatlog · ${room}` : `chatlog · ${room} (${name})`;
    ui.reconnect.hidden = name === "connected" || name === "connecting";
  }

  function showNotice(text) {
    ui.noticeText.textContent = text;
    ui.notice.hidden = false;
  }

  function hideNotice() {
    ui.notice.hidden = true;
    ui.noticeText.textContent = "";
  }

  // --- names -------------------------------------------------------------------------------

  function loadName() {
    try {
      return localStorage.getItem(NAME_KEY) || "";
    } catch {
      return ""; // storage disabled: the name lasts for this page only
    }
  }

  function storeName(name) {
    try {
      if (name) localStorage.setItem(NAME_KEY, name);
      else localStorage.removeItem(NAME_KEY);
    } catch {
      // storage disabled or full: nothing to do
    }
  }

  // The server's rule: trimmed, 1 to 64 printable characters (Python's str.isprintable).
  function nameProblem(name) {
    const chars = [...name];
    if (chars.length === 0) return "Type a name first.";
    if (chars.length > MAX_NAME_CHARS) return `A name can be at most ${MAX_NAME_CHARS} characters.`;
    for (const c of chars) {
      if (/[\p{C}\p{Zl}\p{Zp}]/u.test(c) || (c !== " " && /\p{Zs}/u.test(c))) {
        return "A name cannot contain invisible or control characters.";
      }
    }
    return null;
  }

  function setName(raw) {
    const name = raw.trim();
    const problem = nameProblem(name);
    if (problem) {
      showNotice(problem);
      return false;
    }
    state.name = name;
    storeName(name);
    ui.name.value = name;
    sendFrame({ User: name });
    return true;
  }

  // --- the socket --------------------------------------------------------------------------

  function isOpen() {
    return state.ws !== null && state.ws.readyState === WebSocket.OPEN && state.wsid !== "";
  }

  function sendFrame(frame) {
    if (!isOpen()) return false;
    state.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
    return true;
  }

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    if (state.ws !== null) return;
    const params = new URLSearchParams({ room });
    if (state.loaded) {
      params.set("since", String(state.coveredTo));
      if (state.epoch) params.set("epoch", state.epoch);
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${scheme}//${location.host}/ws?${params}`);
    } catch (err) {
      setState("error", `cannot open a connection (${err.message})`);
      return;
    }
    state.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => {
      if (state.ws === ws) onFrame(event.data);
    };
    ws.onclose = (event) => {
      if (state.ws !== ws) return;
      state.ws = null;
      dropped(event, opened);
    };
  }

  function dropped(event, opened) {
    state.wsid = "";
    state.history = [];
    updateOlder();
    if (event.code === 1008) {
      // Policy refusal (for example an Origin the server does not allow): retrying won't help.
      setState("disconnected", `the server refused this page${event.reason ? `: ${event.reason}` : ""}`);
      return;
    }
    if (event.code === 1009) {
      // Give up on the largest unsent message, or it would be retried, and refused, forever.
      let largest = null;
      for (const [nonce, item] of state.pending) {
        if (largest === null || item.frame.length > state.pending.get(largest).frame.length) {
          largest = nonce;
        }
      }
      if (largest !== null) {
        state.pending.get(largest).li.remove();
        state.pending.delete(largest);
        ui.outboxBox.hidden = state.pending.size === 0;
      }
      showNotice("The server refused a message as too large; it was not sent.");
    }
    if (!navigator.onLine) {
      setState("disconnected", "this device is offline; reconnecting when it is back");
      // The "online" event reconnects at once; a slow retry covers a wrong onLine flag.
      state.timer = setTimeout(reconnectNow, BACKOFF_MAX_MS);
      return;
    }
    const delay = backoff();
    const seconds = Math.max(1, Math.round(delay / 1000));
    if (opened) setState("reconnecting", `connection lost, retrying in ${seconds} s`);
    else setState("error", `cannot reach the server, retrying in ${seconds} s`);
    state.timer = setTimeout(() => {
      setState(state.everConnected ? "reconnecting" : "connecting", "trying now");
      connect();
    }, delay);
  }

  // Exponential backoff with jitter, so many pages don't all return in the same instant.
  function backoff() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** state.attempt);
    state.attempt = Math.min(state.attempt + 1, 16);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  function reconnectNow() {
    if (state.ws !== null) return;
    setState(state.everConnected ? "reconnecting" : "connecting", "trying now");
    connect();
  }

  // --- frames from the server --------------------------------------------------------------

  function onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      showNotice("The server sent something this page could not read; it was skipped.");
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    if (frame.Type === "Search" || (frame.Type === "History" && frame.Around !== undefined)) {
      for (const hook of frameHooks) hook(frame); // search.js: results and a hit's context
      return;
    }
    switch (frame.Type) {
      case "Status":
        onStatus(frame);
        break;
      case "userlist":
        renderUsers(frame.Users);
        break;
      case "Chat":
        addMessage(frame, true);
        break;
      case "Edit":
      case "Delete":
        applyChange(frame);
        break;
      case "Resumed":
        onResumed(frame);
        break;
      case "History":
        onHistory(frame);
        break;
      case "Error":
        onError(frame);
        break;
      default:
        break; // unknown types are ignored, as the original page did
    }
  }

  function onStatus(frame) {
    state.wsid = String(frame.WSID ?? "");
    state.attempt = 0;
    state.everConnected = true;
    const head = Number.isSafeInteger(frame.Head) ? frame.Head : 0;
    const epoch = typeof frame.Epoch === "string" ? frame.Epoch : null;
    if (state.epoch && epoch && epoch !== state.epoch) {
      // The IDs shown belong to a log that was replaced: start the conversation afresh. A
      // resuming socket (since=) gets the new log replayed from its start; a fresh one loads
      // the newest page below.
      const resuming = state.loaded;
      clearConversation();
      state.loaded = resuming;
      showNotice("The server's message log was replaced; the conversation is shown afresh.");
    }
    if (epoch) state.epoch = epoch;
    setState("connected", state.wsid);
    if (state.name) sendFrame({ User: state.name });
    if (!state.loaded) {
      if (head === 0) {
        state.loaded = true;
        state.historyComplete = true;
      } else {
        requestHistory(head + 1, { initial: true, head, before: head + 1 });
      }
    }
    for (const item of state.pending.values()) sendFrame(item.frame);
    updateOlder();
  }

  function onResumed(frame) {
    const to = Number.isSafeInteger(frame.To) ? frame.To : state.coveredTo;
    if (frame.Complete === false && frame.Reason !== "retention") {
      // Too much was missed to replay (Reason "limit"; nothing was sent): show the newest
      // page, older ones by scrolling up.
      const limit = Number.isSafeInteger(frame.Limit) ? frame.Limit : "many";
      clearConversation();
      showNotice(`More than ${limit} messages arrived while this page was away; showing the newest.`);
      requestHistory(to + 1, { initial: true, head: to, before: to + 1 });
      return;
    }
    state.coveredTo = Math.max(state.coveredTo, to);
    if (frame.Reason === "retention") {
      // The backlog was sent from where the log now starts; what lay before it is gone.
      showNotice("Some messages were removed by the server's retention before this page saw them.");
    } else if (frame.From === 1) {
      state.historyComplete = true; // the whole room was replayed
    }
    updateOlder();
  }

  function historyWaiting() {
    return state.history.some((request) => !request.stale);
  }

  function requestHistory(before, request) {
    if (historyWaiting()) return;
    if (sendFrame({ History: { Before: before, Limit: HISTORY_PAGE } })) {
      state.history.push({ ...request, stale: false });
      updateOlder();
    }
  }

  function requestOlder() {
    if (!state.loaded || state.historyComplete || historyWaiting()) return;
    const before = state.oldestLoaded ?? (ids.length > 0 ? ids[0] : state.coveredTo + 1);
    requestHistory(before, { initial: false, before });
  }

  function onHistory(frame) {
    const request = state.history.shift() || { initial: false, stale: false };
    if (request.stale) return; // asked about a conversation that has since been cleared
    const messages = Array.isArray(frame.Messages) ? frame.Messages : [];
    const scroller = ui.scroller;
    const heightBefore = scroller.scrollHeight;
    const topBefore = scroller.scrollTop;
    for (const message of messages) addMessage(message, false);
    const lowest = messages.length > 0 && messages[0] ? messages[0].ID : request.before;
    if (Number.isSafeInteger(lowest)) {
      state.oldestLoaded = Math.min(state.oldestLoaded ?? lowest, lowest);
    }
    if (frame.Complete === true) state.historyComplete = true;
    if (frame.Reason === "retention") {
      // Nothing older is left to page in: the server purged it.
      state.historyComplete = true;
      state.historyTruncated = true;
    }
    if (request.initial) {
      state.loaded = true;
      state.coveredTo = Math.max(state.coveredTo, request.head);
      scrollToBottom();
    } else {
      // Keep the message the reader was looking at where it was.
      scroller.scrollTop = topBefore + (scroller.scrollHeight - heightBefore);
    }
    updateOlder();
    // A short page leaves nothing to scroll: keep filling until it scrolls or the room ends.
    if (!state.historyComplete && scroller.scrollHeight <= scroller.clientHeight + EDGE_PX) {
      requestOlder();
    }
  }

  const ERROR_WORDS = {
    "invalid-json": "The server could not read what this page sent.",
    "duplicate-key": "The server could not read what this page sent.",
    "invalid-number": "The server could not read what this page sent.",
    "too-deep": "The server could not read what this page sent.",
    "not-an-object": "The server could not read what this page sent.",
    "unknown-frame": "The server did not understand what this page sent.",
    "ambiguous-frame": "The server did not understand what this page sent.",
    "bad-type": "The server did not understand what this page sent.",
    "invalid-text": "The message contains a character the server does not accept (a control character).",
    "invalid-base64": "The message could not be read by the server.",
    "empty-message": "Empty messages are not sent.",
    "invalid-alias": `That name was not accepted: a name is 1 to ${MAX_NAME_CHARS} visible characters.`,
    "store-failed": "The server could not save your message, so nobody saw it. Try again in a moment.",
    "bad-query": "That search could not be run.",
    "not-found": "That message is gone or was never in this room.",
    "not-allowed": "That message can no longer be changed from this page.",
  };

  function onError(frame) {
    const code = typeof frame.Code === "string" ? frame.Code : "";
    const words = ERROR_WORDS[code] || "The server refused something this page sent.";
    const detail = typeof frame.Error === "string" && frame.Error ? ` (${frame.Error})` : "";
    showNotice(words + detail);
    if (code === "invalid-alias") {
      state.name = state.acceptedName || "";
      storeName(state.name);
      ui.name.value = state.name;
    } else if (code === "store-failed") {
      for (const item of state.pending.values()) item.status.textContent = "not saved";
      ui.retry.hidden = state.pending.size === 0;
    }
  }

  // --- the conversation --------------------------------------------------------------------

  const SENT = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)$/;

  function renderTime(sent) {
    const time = el("time", "sent");
    const m = typeof sent === "string" ? SENT.exec(sent) : null;
    if (!m) {
      time.textContent = typeof sent === "string" ? sent : "";
      return time;
    }
    const when = new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
    const today = new Date().toDateString() === when.toDateString();
    const clock = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    time.textContent = today ? clock : `${when.toLocaleDateString()} ${clock}`;
    time.dateTime = when.toISOString();
    time.title = `${sent} UTC`;
    return time;
  }

  function renderMessage(frame, text) {
    const li = el("li", "msg");
    const meta = el("div", "meta");
    const author = el("span", "author", frame.Author == null ? "unknown" : String(frame.Author));
    author.dir = "auto";
    meta.append(author, " ", renderTime(frame.Sent));
    const body = el("p", "text", text === null ? "(this message could not be read)" : text);
    body.dir = "auto";
    if (text === null) body.classList.add("unreadable");
    li.append(meta, body);
    if (frame.Deleted) markDeleted(li);
    else if (frame.Edited) markEdited(li);
    return li;
  }

  // --- edits and deletions -----------------------------------------------------------------

  function markEdited(li) {
    if (li.querySelector(".edited") === null) {
      li.querySelector(".meta").append(el("span", "edited", "edited"));
    }
  }

  function markDeleted(li) {
    li.classList.add("deleted");
    const body = li.querySelector(".text");
    body.textContent = "message deleted";
    body.classList.remove("unreadable");
    for (const node of li.querySelectorAll(".edited, .actions")) node.remove();
    if (state.editing !== null && li.dataset.id === String(state.editing)) stopEditing();
  }

  // An Edit or Delete frame: change the message it names in place, if this page shows it
  // (an older one is fetched by History in its current state anyway).
  function applyChange(frame) {
    const id = Number.isSafeInteger(frame.ID) ? frame.ID : null;
    if (id !== null) state.coveredTo = Math.max(state.coveredTo, id);
    const li = Number.isSafeInteger(frame.Target) ? shown.get(frame.Target) : undefined;
    if (li === undefined || li.classList.contains("deleted")) return;
    if (frame.Type === "Delete" || frame.Deleted) {
      markDeleted(li);
      return;
    }
    const text = decodeBody(frame.Message);
    const body = li.querySelector(".text");
    body.textContent = text === null ? "(this message could not be read)" : text;
    body.classList.toggle("unreadable", text === null);
    markEdited(li);
  }

  function addActions(li, id) {
    const actions = el("span", "actions");
    const edit = el("button", "edit", "Edit");
    edit.type = "button";
    edit.setAttribute("aria-label", "Edit this message");
    edit.addEventListener("click", () => startEditing(id));
    const remove = el("button", "delete", "Delete");
    remove.type = "button";
    remove.setAttribute("aria-label", "Delete this message");
    remove.addEventListener("click", () => sendFrame({ Delete: { ID: id } }));
    actions.append(edit, remove);
    li.querySelector(".meta").append(actions);
  }

  function startEditing(id) {
    const li = shown.get(id);
    if (li === undefined || li.classList.contains("deleted")) return;
    stopEditing();
    state.editing = id;
    li.classList.add("editing");
    ui.text.value = li.querySelector(".text").textContent;
    ui.text.placeholder = "Edit the message; Enter saves, Escape cancels";
    ui.sendForm.dataset.editing = String(id);
    ui.text.focus();
  }

  function stopEditing() {
    if (state.editing === null) return;
    const li = shown.get(state.editing);
    if (li !== undefined) li.classList.remove("editing");
    state.editing = null;
    delete ui.sendForm.dataset.editing;
    ui.text.placeholder = "Type a message, or alias NAME to set your name";
    ui.text.value = "";
  }

  // The newest message of this page that can still be edited (Up arrow).
  function lastOwn() {
    for (let i = ids.length - 1; i >= 0; i -= 1) {
      const li = shown.get(ids[i]);
      if (li.classList.contains("mine") && !li.classList.contains("deleted")) return ids[i];
    }
    return null;
  }

  function sendEdit(line) {
    const id = state.editing;
    if (line.trim() === "") {
      stopEditing(); // nothing to save: deleting is its own button
      return true;
    }
    if (CONTROL.test(line)) {
      showNotice("The message contains an invisible control character the server does not accept.");
      return false;
    }
    const frame = JSON.stringify({ Edit: { ID: id, Message: encodeText(line) } });
    if (new TextEncoder().encode(frame).length > maxBytes) {
      showNotice(`The message is too long: the server takes at most ${maxBytes} bytes at a time.`);
      return false;
    }
    if (!sendFrame(frame)) {
      showNotice("Not connected: the edit was not sent.");
      return false;
    }
    stopEditing();
    return true;
  }

  function addMessage(frame, live) {
    if (frame === null || typeof frame !== "object") return;
    const id = Number.isSafeInteger(frame.ID) ? frame.ID : null;
    settle(frame);
    if (id !== null && shown.has(id)) return; // seen already (resume, history, retried send)
    const text = decodeBody(frame.Message);
    const li = renderMessage(frame, text);
    if (typeof frame.Nonce === "string" && state.mine.has(frame.Nonce)) {
      li.classList.add("mine");
      if (id !== null && !frame.Deleted) addActions(li, id);
    }
    const stick = noteScroll();
    if (id === null) {
      ui.chat.append(li);
    } else {
      li.dataset.id = String(id);
      let at = ids.length;
      if (at > 0 && id < ids[at - 1]) {
        let lo = 0;
        let hi = at;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (ids[mid] < id) lo = mid + 1;
          else hi = mid;
        }
        at = lo;
      }
      if (at === ids.length) ui.chat.append(li);
      else ui.chat.insertBefore(li, shown.get(ids[at]));
      ids.splice(at, 0, id);
      shown.set(id, li);
      if (live) state.coveredTo = Math.max(state.coveredTo, id);
    }
    if (live && !stick && li === ui.chat.lastElementChild) ui.jump.hidden = false;
    if (shown.size === 1) updateOlder(); // "No messages yet." no longer holds
  }

  // Decide once per batch of frames whether to follow the newest message, before any of the
  // batch changes the layout, and scroll after the batch is in.
  function noteScroll() {
    if (!state.scrollQueued) {
      state.scrollQueued = true;
      state.stick = atBottom();
      requestAnimationFrame(() => {
        state.scrollQueued = false;
        if (state.stick) scrollToBottom();
      });
    }
    return state.stick;
  }

  function atBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < EDGE_PX;
  }

  function scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    ui.jump.hidden = true;
    state.pinned = true;
  }

  function clearConversation() {
    ui.chat.replaceChildren();
    shown.clear();
    ids.length = 0;
    state.coveredTo = 0;
    state.loaded = false;
    for (const request of state.history) request.stale = true;
    state.historyComplete = false;
    state.historyTruncated = false;
    state.oldestLoaded = null;
    updateOlder();
  }

  function updateOlder() {
    const waiting = historyWaiting();
    ui.older.hidden = !state.loaded || state.historyComplete || waiting;
    ui.olderStatus.textContent = waiting
      ? "Loading older messages…"
      : !state.loaded || !state.historyComplete
        ? ""
        : state.historyTruncated
          ? "Older messages were removed by the server's retention."
          : shown.size > 0
            ? "This is the start of the conversation."
            : "No messages yet.";
  }

  function renderUsers(users) {
    const list = Array.isArray(users) ? users : [];
    const items = list.map((user) => {
      const name = user !== null && typeof user === "object" && user.User != null ? String(user.User) : "";
      const li = el("li", "user", name);
      li.dir = "auto";
      if (name !== "" && name === state.name) {
        li.classList.add("me");
        state.acceptedName = name;
      }
      return li;
    });
    ui.users.replaceChildren(...items);
    ui.userCount.textContent = String(list.length);
  }

  // --- sending -----------------------------------------------------------------------------

  function newNonce() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // The server refuses control characters other than tab, CR and LF.
  const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;

  function send(line) {
    if (state.editing !== null) return sendEdit(line);
    if (line.trim() === "") return false; // empty input sends nothing
    const alias = /^alias (.*)$/s.exec(line);
    if (alias) {
      if (alias[1].trim() === "") {
        showNotice("Type a name after alias, for example: alias sam");
        return false;
      }
      return setName(alias[1]);
    }
    if (CONTROL.test(line)) {
      showNotice("The message contains an invisible control character the server does not accept.");
      return false;
    }
    const nonce = newNonce();
    const frame = JSON.stringify({ Message: encodeText(line), Author: state.name || "unknown", Nonce: nonce });
    if (new TextEncoder().encode(frame).length > maxBytes) {
      showNotice(`The message is too long: the server takes at most ${maxBytes} bytes at a time.`);
      return false;
    }
    const li = el("li", "msg pending");
    const meta = el("div", "meta");
    const status = el("span", "status", "sending…");
    meta.append(el("span", "author", state.name || "unknown"), " ", status);
    const body = el("p", "text", line);
    body.dir = "auto";
    li.append(meta, body);
    ui.outbox.append(li);
    ui.outboxBox.hidden = false;
    state.pending.set(nonce, { frame, li, status });
    state.mine.add(nonce);
    sendFrame(frame);
    scrollToBottom();
    return true;
  }

  // A chat frame came back: the message it carries is stored, so stop retrying it.
  function settle(frame) {
    if (typeof frame.Nonce !== "string") return;
    const item = state.pending.get(frame.Nonce);
    if (!item) return;
    state.pending.delete(frame.Nonce);
    item.li.remove();
    ui.outboxBox.hidden = state.pending.size === 0;
    if (state.pending.size === 0) ui.retry.hidden = true;
  }

  // --- wiring ------------------------------------------------------------------------------

  ui.sendForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (send(ui.text.value)) ui.text.value = "";
    ui.text.focus();
  });

  ui.text.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.editing !== null) {
      event.preventDefault();
      stopEditing();
    } else if (event.key === "ArrowUp" && ui.text.value === "" && state.editing === null) {
      const id = lastOwn();
      if (id !== null) {
        event.preventDefault();
        startEditing(id);
      }
    }
  });

  ui.nameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (setName(ui.name.value)) hideNotice();
  });

  ui.scroller.addEventListener("scroll", () => {
    state.pinned = atBottom();
    if (state.pinned) ui.jump.hidden = true;
    if (ui.scroller.scrollTop < EDGE_PX) requestOlder();
  }, { passive: true });

  ui.older.addEventListener("click", requestOlder);
  ui.jump.addEventListener("click", scrollToBottom);
  ui.dismiss.addEventListener("click", () => {
    hideNotice();
    ui.text.focus();
  });
  ui.reconnect.addEventListener("click", reconnectNow);
  ui.retry.addEventListener("click", () => {
    for (const item of state.pending.values()) {
      item.status.textContent = "sending…";
      sendFrame(item.frame);
    }
    ui.retry.hidden = true;
  });
  window.addEventListener("online", reconnectNow);
  new ResizeObserver(() => {
    if (state.pinned) ui.scroller.scrollTop = ui.scroller.scrollHeight;
  }).observe(ui.scroller);

  // What search.js (loaded after this file) may use: frames this file leaves to it, sending,
  // and rendering a message exactly as the conversation does.
  const frameHooks = [];
  window.chatlogPage = Object.freeze({
    sendFrame,
    decodeBody,
    renderMessage,
    onFrame: (hook) => frameHooks.push(hook),
    conversation: ui.scroller,
  });

  ui.room.textContent = room;
  ui.name.value = state.name;
  setState("connecting", "");
  connect();
})();
