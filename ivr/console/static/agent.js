// Agent console: queue state, screen-pop, counselling record, inbox, knowledge search.
"use strict";
(function () {
  const stateEl = document.getElementById("agent-state");
  const note = document.getElementById("state-note");
  let currentContact = null;

  function showState(state, reason) {
    stateEl.dataset.state = state;
    stateEl.textContent = t("st_" + state) + (reason ? " (" + reason + ")" : "");
  }

  const phone = PhoneBanner(document.getElementById("phone-banner"));
  let pending = null;  // a state change asked for and not yet confirmed by the bridge

  function say(text, error) { note.textContent = text; note.className = error ? "note error" : "note"; }

  async function command(action, reason) {
    const body = { action };
    if (reason) body.reason = reason;
    const r = await api("POST", "/api/console/agent/state", body);
    clearTimeout(pending);
    if (!r.ok) {
      // 503: the phone system is down (the server said why); anything else: the server's reason
      say(r.status === 503 ? t("phone_down") : t("act_failed") + ": " + ((r.data && r.data.error) || r.status), true);
      note.dataset.job = "";
      return;
    }
    say(t("st_requested") + ": " + t("act_" + action), false);
    note.dataset.job = r.data.job_id;
    pending = setTimeout(() => say(t("act_no_answer"), true), 10000);
  }
  document.getElementById("btn-ready").addEventListener("click", async () => {
    await command(stateEl.dataset.state === "paused" ? "unpause" : "login");
  });
  document.getElementById("btn-pause").addEventListener("click", async () => {
    const sel = document.getElementById("pause-reason");
    await command("pause", sel.value);
  });
  document.getElementById("btn-logout").addEventListener("click", () => command("logout"));

  function contactRow(c) {
    const cat = c.category ? (document.documentElement.lang === "ko" ? c.category.ko : c.category.en) : "—";
    return el("tr", {}, el("td", {}, fmtDate(c.started_at)), el("td", {}, label("ch_", c.channel)), el("td", {}, cat),
      el("td", {}, c.notes || ""), el("td", {}, c.resolution ? t("res_" + c.resolution) : "—"));
  }

  async function screenpop(msg) {
    document.getElementById("no-call").hidden = true;
    document.getElementById("call-info").hidden = false;
    document.getElementById("call-event").textContent = msg.event === "connected" ? t("call_connected") : t("call_offered");
    document.getElementById("call-event").dataset.event = msg.event;
    document.getElementById("call-caller").textContent = msg.caller || "—";
    document.getElementById("call-queue").textContent = msg.queue || "—";
    document.getElementById("call-contact").textContent = msg.contact_id ? "#" + msg.contact_id : "—";
    if (!msg.contact_id) return;
    const r = await api("GET", "/api/console/contacts/" + msg.contact_id);
    if (!r.ok) return;
    const tbody = document.querySelector("#earlier tbody");
    tbody.replaceChildren(...r.data.earlier.map(contactRow));
    if (!r.data.earlier.length) tbody.append(el("tr", {}, el("td", { colSpan: 5 }, t("no_earlier"))));
    if (currentContact !== msg.contact_id) {
      currentContact = msg.contact_id;
      const c = r.data.contact;
      document.getElementById("record-contact").value = c.id;
      document.getElementById("record-notes").value = c.notes || "";
      document.getElementById("record-category").value = c.category ? c.category.code : "";
      document.getElementById("record-resolution").value = c.resolution || "";
      document.getElementById("record-save").disabled = false;
      document.getElementById("record-status").textContent = "";
    }
  }

  document.getElementById("record-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = document.getElementById("record-contact").value;
    if (!id) return;
    const r = await api("POST", "/api/console/contacts/" + id + "/record", {
      category: document.getElementById("record-category").value || null,
      notes: document.getElementById("record-notes").value,
      resolution: document.getElementById("record-resolution").value || null,
    });
    const status = document.getElementById("record-status");
    status.textContent = r.ok ? t("saved") : (r.data && r.data.error) || "error";
    status.dataset.ok = r.ok ? "1" : "0";
  });

  function thread(title, messages, send, extra) {
    // SMS lines carry "direction" (in/out); chat lines "from" (citizen/agent).
    const side = (m) => m.direction || (m.from === "agent" ? "out" : "in");
    const lines = el("ul", { class: "thread" }, ...messages.map((m) => el("li", { class: "msg " + side(m) }, m.body)));
    const input = el("input", { type: "text", placeholder: t("reply") });
    const form = el("form", { class: "row" }, input, el("button", { type: "submit" }, t("send")));
    const status = el("span", { class: "note" });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await send(input.value);
      status.textContent = r.ok ? t("sent") : (r.data && r.data.error) || "error";
      if (r.ok) { input.value = ""; input.blur(); loadInbox(true); }
    });
    return el("div", { class: "conversation" }, el("b", {}, title), extra || null, lines, form, status);
  }

  // One refresh at a time, and none that replaces a reply being typed: an earlier, slower
  // refresh finishing after the agent started typing swapped the form for an empty one, so the
  // reply that was then sent was empty and never reached the citizen.
  let inboxBusy = false, inboxAgain = false;
  const typing = (box) => box.contains(document.activeElement) && document.activeElement.tagName === "INPUT";
  async function loadInbox(force) {
    if (inboxBusy) { inboxAgain = true; return; }
    inboxBusy = true;
    try { await refreshInbox(force); } finally { inboxBusy = false; }
    if (inboxAgain) { inboxAgain = false; await loadInbox(); }
  }

  async function refreshInbox(force) {
    const box = document.getElementById("inbox");
    if (!force && typing(box)) return;
    const parts = [];
    const chats = await api("GET", "/api/messaging/chats");
    if (chats.ok) {
      for (const c of chats.data.waiting) {
        const accept = el("button", { type: "button", class: "accept" }, t("accept_chat"));
        accept.addEventListener("click", async () => { await api("POST", "/api/messaging/chats/" + c.id + "/accept", {}); loadInbox(true); });
        parts.push(el("div", { class: "conversation waiting", "data-chat": c.id },
          el("b", {}, t("waiting_chat") + " #" + c.id + " · " + label("lang_", c.language || "")), " ", accept));
      }
      for (const c of chats.data.active) {
        const full = await api("GET", "/api/messaging/chats/" + c.id);
        const msgs = full.ok ? full.data.messages || [] : [];
        const node = thread(t("chat") + " #" + c.id, msgs, (body) => api("POST", "/api/messaging/chats/" + c.id + "/messages", { body }));
        node.dataset.chat = c.id;
        parts.push(node);
      }
    }
    const r = await api("GET", "/api/console/inbox");
    if (r.ok) {
      for (const c of r.data.items) {
        const node = thread(label("ch_", c.channel) + " · " + (c.from || "?"), c.messages,
          (body) => api("POST", "/api/messaging/contacts/" + c.id + "/reply", { body }));
        node.dataset.contact = c.id;
        parts.push(node);
      }
    }
    if (typing(box)) return;  // the agent began typing while this refresh ran
    box.replaceChildren(...(parts.length ? parts : [el("p", { class: "note" }, t("empty_inbox"))]));
  }

  document.getElementById("kb-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = document.getElementById("kb-q").value.trim();
    const list = document.getElementById("kb-results");
    if (!q) return;
    const [articles, r] = await Promise.all([
      api("GET", "/api/console/kb/articles?q=" + encodeURIComponent(q)),
      api("GET", "/api/console/kb?q=" + encodeURIComponent(q))]);
    const articleList = document.getElementById("kb-articles");
    if (!articles.ok) articleList.replaceChildren(el("li", {}, (articles.data && articles.data.error) || "error"));
    else if (!articles.data.items.length) articleList.replaceChildren(el("li", {}, t("no_results")));
    else articleList.replaceChildren(...articles.data.items.map(articleItem));
    if (!r.ok) { list.replaceChildren(el("li", {}, (r.data && r.data.error) || "error")); return; }
    if (!r.data.items.length) { list.replaceChildren(el("li", {}, t("no_results"))); return; }
    const supervisor = ["supervisor", "admin"].includes(document.body.dataset.role);
    list.replaceChildren(...r.data.items.map((h) => {
      let make = null;
      if (supervisor && h.contact) {  // one click: the contact becomes an article, opened for editing
        make = el("button", { type: "button", class: "make-article" }, t("kb_make"));
        make.addEventListener("click", async () => {
          const made = await api("POST", "/api/console/kb/from-contact/" + h.contact.id);
          if (made.ok) location.href = "/console/knowledge?article=" + made.data.id;
        });
      }
      return el("li", {},
        el("small", {}, (h.contact ? "#" + h.contact.id + " · " + fmtDate(h.contact.started_at) : "") + " · " + h.kind),
        el("div", {}, h.text), make);
    }));
  });

  // The reply box an article goes into: the conversation the agent last typed in (or the first).
  let replyTarget = null;
  document.getElementById("inbox").addEventListener("focusin", (ev) => {
    if (ev.target.tagName === "INPUT") replyTarget = ev.target;
  });

  function articleItem(a) {
    const text = a.texts[document.documentElement.lang] || a.texts.ko;
    const insert = el("button", { type: "button", class: "insert" }, t("kb_insert"));
    const note = el("small", { class: "note" });
    insert.addEventListener("click", async () => {
      const box = document.getElementById("inbox");
      const input = replyTarget && box.contains(replyTarget) ? replyTarget : box.querySelector(".conversation form input");
      const conversation = input && input.closest(".conversation");
      if (!conversation) { note.textContent = t("kb_no_reply"); return; }
      const body = conversation.dataset.chat ? { chat_id: Number(conversation.dataset.chat) }
                                             : { contact_id: Number(conversation.dataset.contact) };
      const r = await api("POST", "/api/console/kb/articles/" + a.id + "/use", body);
      if (!r.ok) { note.textContent = (r.data && r.data.error) || "error"; return; }
      input.value = input.value ? input.value + " " + r.data.text : r.data.text;
      input.focus();
      item.querySelector(".usage").textContent = r.data.usage_count;
      note.textContent = t("kb_inserted") + (r.data.missing.length ? " · " + t("kb_missing") + ": " + r.data.missing.join(", ") : "");
    });
    const item = el("li", { "data-key": a.key },
      el("b", {}, text.title), " ", el("small", {}, t("kb_usage") + " "), el("small", { class: "usage" }, a.usage_count),
      el("div", {}, text.body), insert, " ", note);
    return item;
  }

  // Live partials of my connected call (masked; shown only, never stored), one lane per
  // speaker (caller, agent; "mixed" when a stream names no speaker): finished sentences
  // accumulate, the running hypothesis replaces itself.
  let liveContact = null;
  const lanes = () => document.querySelectorAll("#live-transcript .lane");
  function lane(speaker) {
    return document.getElementById("live-" + (speaker === "caller" || speaker === "agent" ? speaker : "mixed"));
  }
  function partial(msg) {
    if (msg.contact_id !== liveContact) {
      liveContact = msg.contact_id;
      for (const box of lanes()) {
        box.querySelector(".final").textContent = "";
        box.querySelector(".running").textContent = "";
      }
      lane("mixed").hidden = true;
      showSuggestions([]);
    }
    const box = lane(msg.speaker);
    box.hidden = false;
    const done = box.querySelector(".final"), running = box.querySelector(".running");
    if (msg.final) {
      if (msg.text) done.textContent = (done.textContent ? done.textContent + " " : "") + msg.text;
      running.textContent = "";
    } else running.textContent = msg.text;
    suggestSoon();
  }

  // Knowledge-base suggestions on the running text: asked for at most every SUGGEST_MS (the
  // last partial of a burst always asks), one request at a time, only when the text changed.
  const SUGGEST_MS = 600;
  let suggestTimer = null, suggestBusy = false, suggestAgain = false, suggestedFor = "";
  function liveText() {
    return Array.from(lanes(), (box) => box.querySelector(".final").textContent + " " +
      box.querySelector(".running").textContent).join(" ").replace(/\s+/g, " ").trim();
  }
  function suggestSoon() {
    if (suggestTimer === null) suggestTimer = setTimeout(() => { suggestTimer = null; suggest(); }, SUGGEST_MS);
  }
  async function suggest() {
    if (suggestBusy) { suggestAgain = true; return; }
    const text = liveText(), contact = liveContact;
    if (!text || text === suggestedFor) return;
    suggestBusy = true;
    try {
      const r = await api("POST", "/api/console/kb/suggest", { text: text, channel: "voice" });
      if (r.ok && contact === liveContact) { suggestedFor = text; showSuggestions(r.data.items); }
    } finally { suggestBusy = false; }
    if (suggestAgain) { suggestAgain = false; suggestSoon(); }
  }
  function showSuggestions(items) {
    const list = document.getElementById("kb-suggestions");
    if (!items.length) suggestedFor = "";
    list.dataset.for = items.length ? String(liveContact) : "";
    list.replaceChildren(...items.map((a) => el("li", { "data-key": a.key },
      el("b", {}, a.title), " ", el("small", { class: "note" }, "(" + a.matched.join(", ") + ")"),
      el("div", {}, a.body))));
  }

  function connect() {
    const ws = new WebSocket(wsUrl("/ws/console/agent"));
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "screenpop") screenpop(msg);
      else if (msg.type === "partial") partial(msg);
      else if (msg.type === "agent" && msg.error) {
        clearTimeout(pending);
        say(t("act_failed") + ": " + (msg.retrying ? t("phone_down") + " " + t("act_retrying") : msg.error), true);
      }
      else if (msg.type === "agent") { clearTimeout(pending); showState(msg.state, msg.reason); say("", false); }
      else if (msg.type === "phone") phone.update(msg);
      else if (msg.type === "hello") document.body.dataset.ws = "open";
    };
    ws.onclose = () => { document.body.dataset.ws = "closed"; setTimeout(connect, 2000); };
  }

  api("GET", "/api/console/agent/state").then((r) => { if (r.ok) showState(r.data.state, r.data.reason); });
  loadInbox();
  setInterval(loadInbox, 10000);
  connect();

  // Web chats: the messaging desk's WebSocket says when a chat waits, is assigned, or gets a line.
  function chatDesk() {
    if (document.body.dataset.role !== "agent") return;  // the chat desk is for agents
    const ws = new WebSocket(wsUrl("/api/messaging/agent/ws"));
    ws.onmessage = () => loadInbox();
    ws.onopen = () => { document.body.dataset.chat = "open"; };
    ws.onclose = () => { document.body.dataset.chat = "closed"; setTimeout(chatDesk, 3000); };
  }
  chatDesk();
})();
