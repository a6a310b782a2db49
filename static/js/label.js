// The labeling page: lease a task, rank and rate its completions, submit exactly once.
"use strict";

(function () {
  const root = document.getElementById("labeler");
  if (!root) return;
  const projectId = root.dataset.projectId;
  const allowTies = root.dataset.allowTies === "true";
  const schema = JSON.parse(root.dataset.schema);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const LETTERS = "ABCDEFGHI";

  let assignment = null;   // the leased task (or the judged one being revised), as the API returned it
  let revising = null;     // the judgment being revised, if any
  let ranking = [];        // [{id, tied}] best first; tied = same rank as the one above
  let selected = null;     // completion id chosen with the keyboard
  let startedAt = 0;
  let idempotencyKey = null;
  let sending = false;
  let heartbeatTimer = null;

  async function api(method, path, body, extraHeaders) {
    const headers = Object.assign({"X-CSRF-Token": csrf, "Accept": "application/json"}, extraHeaders || {});
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch("/api/v1" + path, {method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body)});
    let data = null;
    if (response.status !== 204) data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = data && data.error ? data.error.message : "the server answered " + response.status;
      throw new Error(message);
    }
    return {status: response.status, data};
  }

  function show(id, on) { $(id).classList.toggle("hidden", !on); }
  function say(id, text) { $(id).textContent = text; show(id, Boolean(text)); }
  function letter(id) { return LETTERS[assignment.completions.findIndex((c) => c.id === id)]; }

  async function reopen(judgmentId) {
    try {
      const {data} = await api("GET", `/judgments/${judgmentId}`);
      load(data, data);
      say("status", `Revising your judgment #${data.id} (revision ${data.revision}).`);
    } catch (err) { say("error", "Could not reopen that judgment: " + err.message); await next(); }
  }

  async function next() {
    say("error", "");
    revising = null;
    clearInterval(heartbeatTimer);
    try {
      const {status, data} = await api("POST", `/projects/${projectId}/assignments`);
      if (status === 204) { assignment = null; show("task", false); show("empty", true); return; }
      load(data);
    } catch (err) { say("error", "Could not get a task: " + err.message); }
  }

  function load(data, previous) {
    assignment = data;
    revising = previous || null;
    ranking = [];
    selected = null;
    startedAt = Date.now();
    idempotencyKey = crypto.randomUUID();  // one key per task: a retry or double click is stored once
    renderPrompt(data.prompt);
    renderCompletions();
    for (const id of ["rationale", "demonstration", "skip-reason"]) $(id).value = "";
    $("none-acceptable").checked = false;
    $("report-prompt").checked = false;
    show("ab-buttons", data.completions.length === 2);
    show("empty", false);
    show("task", true);
    if (revising) prefill(revising);
    renderRanking();
    if (revising) return;  // nothing is leased while revising
    heartbeatTimer = setInterval(() => api("POST", `/assignments/${assignment.id}/heartbeat`).catch(() => {}), 5 * 60 * 1000);
  }

  function prefill(previous) {
    const byRank = Object.entries(previous.ranks).map(([id, rank]) => [Number(id), rank]).sort((a, b) => a[1] - b[1]);
    ranking = byRank.map(([id, rank], i) => ({id, tied: i > 0 && byRank[i - 1][1] === rank}));
    for (const [id, rating] of Object.entries(previous.ratings)) {
      if (rating.likert !== null) document.querySelector(`input[name="likert-${id}"][value="${rating.likert}"]`).checked = true;
      for (const flag of rating.flags) {
        const box = document.querySelector(`input[name="flag-${id}"][value="${CSS.escape(flag)}"]`);
        if (box) box.checked = true;
      }
      document.querySelector(`input[name="note-${id}"]`).value = rating.note;
    }
    $("rationale").value = previous.rationale;
    $("demonstration").value = previous.demonstration || "";
    $("none-acceptable").checked = previous.none_acceptable;
    $("report-prompt").checked = previous.prompt_flags.includes("reported");
  }

  function renderPrompt(prompt) {
    const box = $("prompt");
    box.replaceChildren();
    const turns = prompt.messages || [{role: "user", content: prompt.text}];
    for (const turn of turns) {
      const div = document.createElement("div");
      div.className = "turn turn-" + turn.role;
      const who = document.createElement("div");
      who.className = "turn-role";
      who.textContent = turn.role;
      const text = document.createElement("div");
      text.className = "turn-text";
      text.textContent = turn.content;
      div.append(who, text);
      box.append(div);
    }
  }

  function renderCompletions() {
    const box = $("completions");
    box.replaceChildren();
    box.dataset.count = String(assignment.completions.length);
    const likert = schema.likert;
    assignment.completions.forEach((c, i) => {
      const card = document.createElement("article");
      card.className = "card completion";
      card.id = "completion-" + c.id;
      card.dataset.id = c.id;
      const head = document.createElement("header");
      head.className = "completion-head";
      const title = document.createElement("h3");
      title.textContent = `${LETTERS[i]} (key ${i + 1})`;
      const rankButton = document.createElement("button");
      rankButton.type = "button";
      rankButton.className = "button button-small rank-button";
      rankButton.textContent = "Rank";
      rankButton.addEventListener("click", () => place(c.id));
      head.append(title, rankButton);
      const body = document.createElement("div");
      body.className = "markdown completion-text";
      body.innerHTML = c.html;  // rendered by the server's markdown renderer, which escapes raw HTML
      const form = document.createElement("fieldset");
      form.className = "rating";
      const legend = document.createElement("legend");
      legend.textContent = `${likert.label} (${likert.min}–${likert.max})`;
      const scale = document.createElement("div");
      scale.className = "likert";
      for (let v = likert.min; v <= likert.max; v++) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        Object.assign(input, {type: "radio", name: "likert-" + c.id, value: String(v)});
        label.append(input, document.createTextNode(String(v)));
        scale.append(label);
      }
      const flags = document.createElement("div");
      flags.className = "flags";
      for (const flag of schema.flags) {
        const label = document.createElement("label");
        label.className = "checkbox";
        const input = document.createElement("input");
        Object.assign(input, {type: "checkbox", name: "flag-" + c.id, value: flag.key});
        label.append(input, document.createTextNode(" " + flag.label));
        flags.append(label);
      }
      const note = document.createElement("input");
      Object.assign(note, {type: "text", name: "note-" + c.id, maxLength: 10000, placeholder: "Note (optional)"});
      note.setAttribute("aria-label", `Note on ${LETTERS[i]}`);
      form.append(legend, scale, flags, note);
      card.append(head, body, form);
      box.append(card);
    });
  }

  function ranks() {
    const out = {};
    let rank = 0;
    ranking.forEach((entry, i) => {
      if (!(allowTies && entry.tied && i > 0)) rank = i + 1;
      out[entry.id] = rank;
    });
    return out;
  }

  function renderRanking() {
    const list = $("ranking");
    list.replaceChildren();
    const current = ranks();
    ranking.forEach((entry, i) => {
      const li = document.createElement("li");
      li.className = "rank-item" + (entry.id === selected ? " selected" : "");
      li.draggable = true;
      li.dataset.id = entry.id;
      const text = assignment.completions.find((c) => c.id === entry.id).text;
      li.textContent = `#${current[entry.id]}  ${letter(entry.id)}: ${text.slice(0, 90)}${text.length > 90 ? "…" : ""}`;
      if (allowTies && i > 0) {
        const tie = document.createElement("label");
        tie.className = "tie";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.checked = entry.tied;
        box.addEventListener("change", () => { entry.tied = box.checked; renderRanking(); });
        tie.append(box, document.createTextNode(" tie"));
        li.append(tie);
      }
      li.addEventListener("click", (event) => { if (event.target.tagName !== "INPUT") { selected = entry.id; renderRanking(); } });
      li.addEventListener("dragstart", (event) => event.dataTransfer.setData("text/plain", String(entry.id)));
      li.addEventListener("dragover", (event) => event.preventDefault());
      li.addEventListener("drop", (event) => { event.preventDefault(); moveBefore(Number(event.dataTransfer.getData("text/plain")), entry.id); });
      list.append(li);
    });
    list.ondragover = (event) => event.preventDefault();
    list.ondrop = (event) => { if (event.target === list) { event.preventDefault(); moveBefore(Number(event.dataTransfer.getData("text/plain")), null); } };
    const pool = $("unranked");
    pool.replaceChildren();
    for (const c of assignment.completions) {
      if (ranking.some((e) => e.id === c.id)) continue;
      const li = document.createElement("li");
      li.className = "unranked-item";
      li.draggable = true;
      li.dataset.id = c.id;
      li.textContent = `${letter(c.id)}: ${c.text.slice(0, 90)}${c.text.length > 90 ? "…" : ""}`;
      li.addEventListener("click", () => place(c.id));
      li.addEventListener("dragstart", (event) => event.dataTransfer.setData("text/plain", String(c.id)));
      pool.append(li);
    }
    show("unranked-wrap", ranking.length < assignment.completions.length);
    $("submit").disabled = ranking.length !== assignment.completions.length || sending;
  }

  function place(id) {
    if (!ranking.some((e) => e.id === id)) ranking.push({id, tied: false});
    selected = id;
    renderRanking();
  }

  function moveBefore(id, beforeId) {
    if (!id || id === beforeId) return;
    const existing = ranking.find((e) => e.id === id) || {id, tied: false};
    ranking = ranking.filter((e) => e.id !== id);
    const at = beforeId === null ? ranking.length : ranking.findIndex((e) => e.id === beforeId);
    ranking.splice(at, 0, existing);
    selected = id;
    renderRanking();
  }

  function move(delta) {
    const i = ranking.findIndex((e) => e.id === selected);
    const j = i + delta;
    if (i < 0 || j < 0 || j >= ranking.length) return;
    [ranking[i], ranking[j]] = [ranking[j], ranking[i]];
    renderRanking();
  }

  function abChoice(choice) {
    const [a, b] = assignment.completions.map((c) => c.id);
    if (choice === "A") ranking = [{id: a, tied: false}, {id: b, tied: false}];
    if (choice === "B") ranking = [{id: b, tied: false}, {id: a, tied: false}];
    if (choice === "tie") ranking = [{id: a, tied: false}, {id: b, tied: true}];
    if (choice === "bad") {
      ranking = [{id: a, tied: false}, {id: b, tied: allowTies}];
      $("none-acceptable").checked = true;
    }
    renderRanking();
  }

  function body() {
    const ratings = {};
    for (const c of assignment.completions) {
      const checked = document.querySelector(`input[name="likert-${c.id}"]:checked`);
      ratings[c.id] = {
        likert: checked ? Number(checked.value) : null,
        flags: [...document.querySelectorAll(`input[name="flag-${c.id}"]:checked`)].map((x) => x.value),
        note: document.querySelector(`input[name="note-${c.id}"]`).value,
      };
    }
    const demonstration = $("demonstration").value.trim();
    return {
      ranks: ranks(), ratings, rationale: $("rationale").value,
      none_acceptable: $("none-acceptable").checked,
      prompt_flags: $("report-prompt").checked ? ["reported"] : [],
      demonstration: demonstration || null,
      duration_ms: Date.now() - startedAt,
    };
  }

  async function submit() {
    if (sending || !assignment || ranking.length !== assignment.completions.length) return;
    sending = true;
    $("submit").disabled = true;
    say("error", "");
    try {
      const headers = {"Idempotency-Key": idempotencyKey};
      const {data} = revising
        ? await api("PUT", `/judgments/${revising.id}`, body(), headers)
        : await api("POST", `/assignments/${assignment.id}/judgment`, body(), headers);
      if (!revising) $("my-count").textContent = String(Number($("my-count").textContent) + 1);
      say("status", `Saved${revising ? " revision " + data.revision : ""}: ${data.comparisons.length} preference pairs. Next task…`);
      if (revising) history.replaceState(null, "", location.pathname);
      sending = false;
      await next();
    } catch (err) {
      sending = false;
      say("error", "Not saved: " + err.message + " Your answers are still here; try again.");
      renderRanking();
    }
  }

  async function skip() {
    if (revising) { history.replaceState(null, "", location.pathname); await next(); return; }
    try {
      await api("POST", `/assignments/${assignment.id}/skip`, {reason: $("skip-reason").value});
      say("status", "Skipped.");
      await next();
    } catch (err) { say("error", "Could not skip: " + err.message); }
  }

  document.addEventListener("keydown", (event) => {
    if (!assignment || ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName) && !(event.ctrlKey && event.key === "Enter")) return;
    const n = Number(event.key);
    if (n >= 1 && n <= assignment.completions.length) { place(assignment.completions[n - 1].id); event.preventDefault(); }
    else if (event.key === "ArrowUp" && selected) { move(-1); event.preventDefault(); }
    else if (event.key === "ArrowDown" && selected) { move(1); event.preventDefault(); }
    else if ((event.key === "t" || event.key === "T") && allowTies && selected) {
      const entry = ranking.find((e) => e.id === selected);
      if (entry && ranking.indexOf(entry) > 0) { entry.tied = !entry.tied; renderRanking(); }
    }
    else if (event.key === "Backspace" && selected) { ranking = ranking.filter((e) => e.id !== selected); selected = null; renderRanking(); event.preventDefault(); }
    else if (event.key === "Escape") { selected = null; renderRanking(); }
    else if (event.key === "Enter" && event.ctrlKey) { submit(); event.preventDefault(); }
  });
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  for (const button of document.querySelectorAll("[data-ab]")) button.addEventListener("click", () => abChoice(button.dataset.ab));
  setInterval(() => {
    if (!assignment) return;
    const s = Math.floor((Date.now() - startedAt) / 1000);
    $("elapsed").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }, 1000);
  const revise = new URLSearchParams(location.search).get("revise");
  if (revise) reopen(revise); else next();
})();
