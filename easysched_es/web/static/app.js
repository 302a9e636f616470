// easysched dashboard: small hand-written script, no framework, no build step.
// Everything that comes from the server as data is put in the page with textContent, never
// as HTML (the only HTML inserted is the Gantt SVG the server rendered and escaped).
"use strict";

const TOKEN_KEY = "easysched-token";
const POLL_MS = 1000;
const FINAL_POLL_MS = 5000;  // an ended instance changes rarely (a late kill confirmation)
const FINAL = ["SUCCESS", "FAILURE", "STOP"];

function $(sel, root) { return (root || document).querySelector(sel); }
function $all(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function getJSON(url, signal) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, signal });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showVerdict(text, ok) {
  const box = $("#verdict");
  box.hidden = false;
  box.textContent = text;
  box.className = ok ? "" : "rejected";
}

// ---- token and actions

function setupToken() {
  const input = $("#token");
  if (!input) return;
  input.value = localStorage.getItem(TOKEN_KEY) || "";
  input.addEventListener("change", () => localStorage.setItem(TOKEN_KEY, input.value.trim()));
}

async function act(action, body) {
  const response = await fetch("/api/actions/" + encodeURIComponent(action), {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Easysched-Token": localStorage.getItem(TOKEN_KEY) || "" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) {
    showVerdict(action + " refused: " + answer.error, false);
  } else if (!answer.ok) {
    showVerdict(action + " rejected by the master: " + answer.reason, false);
  } else {
    const types = answer.events.map((e) => e.type + (e.state ? " " + e.state : "") + (e.task ? " " + e.task : ""));
    showVerdict(action + " accepted at offset " + answer.offset + ": " + (types.join(", ") || "no change"), true);
  }
  return answer;
}

// ---- live values: elements with data-key="a.b" take the value at that path

function fillKeys(view) {
  for (const node of $all("[data-key]")) {
    let value = view;
    for (const part of node.dataset.key.split(".")) value = value == null ? value : value[part];
    node.textContent = value == null ? "" : String(value);
  }
}

function cell(row, text, href) {
  const td = el("td");
  if (href) { const a = el("a", text); a.href = href; td.appendChild(a); } else td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

function stateCell(row, state) {
  const td = cell(row, "");
  td.appendChild(el("span", null, "dot s-" + state));
  td.appendChild(document.createTextNode(state));
}

function fillTable(id, items, columns) {
  const body = $("#" + id + " tbody");
  if (!body) return;
  body.replaceChildren();
  for (const item of items) {
    const row = el("tr");
    for (const col of columns) col(row, item);
    body.appendChild(row);
  }
}

const instLink = (id) => "/instance/" + encodeURIComponent(id);

function pollOverview() {
  const tick = async () => {
    try {
      const view = await getJSON("/api/overview");
      fillKeys(view);
      fillTable("recent", view.recent, [
        (r, i) => cell(r, i.instance, instLink(i.instance)),
        (r, i) => cell(r, i.workflow, "/workflows/" + encodeURIComponent(i.workflow)),
        (r, i) => cell(r, i.version), (r, i) => stateCell(r, i.state), (r, i) => cell(r, i.started_at),
        (r, i) => cell(r, i.ended_at), (r, i) => { cell(r, i.duration_ms).className = "num"; },
      ]);
      fillTable("running", view.running, [
        (r, i) => cell(r, i.workflow), (r, i) => cell(r, i.instance, instLink(i.instance)), (r, i) => cell(r, i.task),
        (r, i) => cell(r, i.attempt), (r, i) => stateCell(r, i.state), (r, i) => cell(r, i.started_at),
        (r, i) => cell(r, i.pid),
      ]);
      fillTable("by-state", Object.entries(view.instances_by_state), [
        (r, i) => stateCell(r, i[0]), (r, i) => { cell(r, i[1]).className = "num"; },
      ]);
    } catch (err) { console.warn(err); }
    setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}

// ---- the instance page: live state, task panel, log tail, time travel

function instancePage() {
  const data = JSON.parse($("#page-data").textContent);
  const id = data.instance;
  let attempts = data.attempts;
  let selected = null;
  let travelling = false;
  let logFrom = null, logKey = null;

  const colour = (name, state) => {
    const node = $all("svg.dag .node").find((n) => n.dataset.task === name);
    if (!node) return;
    node.setAttribute("class", "node s-" + state + (name === selected ? " selected" : ""));
    node.dataset.state = state;
  };
  const setInstanceState = (state) => {
    const s = $("#instance-state");
    s.textContent = state || "(not started)";
    s.className = "state s-" + state;
  };
  const fillTimers = (timers) => {
    if (!timers.length) { fillTable("timers", [0], [(r) => { cell(r, "none").className = "muted"; }]); return; }
    fillTable("timers", timers, [(r, t) => cell(r, t.task), (r, t) => cell(r, t.kind), (r, t) => cell(r, t.due)]);
  };

  const showTask = () => {
    if (!selected) return;
    const panel = $("#task-panel");
    panel.hidden = false;
    $("#task-name").textContent = selected;
    const node = $all("svg.dag .node").find((n) => n.dataset.task === selected);
    $("#task-state").textContent = node ? node.dataset.state : "";
    const mine = attempts.filter((a) => a.task === selected);
    fillTable("task-attempts", mine, [
      (r, a) => cell(r, a.attempt), (r, a) => stateCell(r, a.state), (r, a) => cell(r, a.started_at),
      (r, a) => cell(r, a.ended_at), (r, a) => cell(r, a.duration_ms), (r, a) => cell(r, a.exit_code),
      (r, a) => cell(r, a.reason), (r, a) => cell(r, (a.worker || "") + (a.pid ? " / " + a.pid : "")),
    ]);
    const task = data.tasks.find((t) => t.name === selected);
    const outputs = task && task.outputs ? Object.entries(task.outputs) : [];
    $("#task-outputs").textContent = outputs.length ? "outputs: " + outputs.map(([k, v]) => k + "=" + v).join(", ") : "";
    const last = mine[mine.length - 1];
    if (last && last.attempt > 0) followLog(selected, last.attempt, !last.ended_at);
    else { $("#log-tail").textContent = ""; $("#log-status").textContent = "no log (logic task or not started)"; }
  };

  const followLog = async (task, attempt, running) => {
    const key = task + "\u0000" + attempt;
    if (key !== logKey) { logKey = key; logFrom = null; $("#log-tail").textContent = ""; }
    const query = "?task=" + encodeURIComponent(task) + "&attempt=" + attempt + (logFrom === null ? "" : "&from=" + logFrom);
    try {
      const chunk = await getJSON("/api/instance/" + encodeURIComponent(id) + "/log" + query);
      if (key !== logKey) return;
      $("#log-tail").textContent += chunk.text;
      logFrom = chunk.next;
      $("#log-status").textContent = (chunk.exists ? chunk.size + " bytes" : "no log yet") + (running ? " · following" : "");
    } catch (err) { $("#log-status").textContent = err.message; }
  };

  for (const node of $all("svg.dag .node")) {
    const pick = () => {
      selected = node.dataset.task;
      for (const n of $all("svg.dag .node")) n.classList.toggle("selected", n === node);
      showTask();
    };
    node.addEventListener("click", pick);
    node.addEventListener("keydown", (e) => { if (e.key === "Enter") pick(); });
  }
  for (const button of $all("button.action")) {
    button.addEventListener("click", async () => {
      const body = { instance: id };
      if (button.dataset.action === "kill_task") {
        if (!selected) { showVerdict("select a task in the graph first", false); return; }
        body.task = selected;
      }
      await act(button.dataset.action, body);
      refresh();
    });
  }

  const refresh = async () => {
    if (travelling) return;
    try {
      const view = await getJSON("/api/instance/" + encodeURIComponent(id));
      attempts = view.attempts;
      data.tasks = view.tasks;
      setInstanceState(view.instance.state);
      for (const t of view.tasks) colour(t.name, t.state);
      fillTimers(view.timers);
      $("#gantt").innerHTML = view.gantt_svg;  // rendered and escaped by the server
      if (view.offsets.length !== data.offsets.length) {
        data.offsets = view.offsets;
        const slider = $("#tt-slider");
        slider.max = Math.max(data.offsets.length - 1, 0);
        slider.value = slider.max;
      }
      if (selected) showTask();
    } catch (err) { console.warn(err); }
  };

  // Time travel: the slider walks the offsets that touched this instance.
  const slider = $("#tt-slider");
  let pending = null, timer = null;
  const travel = async (index) => {
    const offset = data.offsets[index];
    if (offset === undefined) return;
    travelling = true;
    slider.value = index;
    $("#tt-label").textContent = "offset " + offset + " (" + (index + 1) + "/" + data.offsets.length + ")";
    const link = location.pathname + "?at=" + offset;
    $("#tt-link").href = link;
    history.replaceState(null, "", link);
    if (pending) pending.abort();
    pending = new AbortController();
    try {
      const view = await getJSON("/api/instance/" + encodeURIComponent(id) + "/at/" + offset, pending.signal);
      setInstanceState(view.state);
      for (const t of data.tasks) colour(t.name, view.tasks[t.name] ? view.tasks[t.name].state : "SUBMITTED_SUCCESS");
      fillTimers(view.timers);
      const cmd = view.command;
      const what = cmd ? cmd.type + (cmd.task ? " " + cmd.task : "") : "(unreadable command)";
      const changes = view.events.map((e) => e.type + (e.task ? " " + e.task : "") + (e.state ? "→" + e.state : ""));
      $("#tt-command").textContent = "at " + view.time + ", command " + what + " caused: " + (changes.join(", ") || "nothing for this instance");
    } catch (err) {
      if (err.name !== "AbortError") $("#tt-command").textContent = err.message;
    }
  };
  const travelSoon = (index) => { clearTimeout(timer); timer = setTimeout(() => travel(index), 120); };
  slider.addEventListener("input", () => travelSoon(Number(slider.value)));
  $("#tt-prev").addEventListener("click", () => travel(Math.max(Number(slider.value) - 1, 0)));
  $("#tt-next").addEventListener("click", () => travel(Math.min(Number(slider.value) + 1, data.offsets.length - 1)));
  $("#tt-live").addEventListener("click", () => {
    travelling = false;
    history.replaceState(null, "", location.pathname);
    $("#tt-label").textContent = "live";
    $("#tt-command").textContent = "";
    slider.value = slider.max;
    refresh();
  });
  for (const a of $all("a.tt-jump")) {
    a.addEventListener("click", (e) => {
      e.preventDefault();
      const index = data.offsets.indexOf(Number(a.dataset.offset));
      if (index >= 0) travel(index);
    });
  }
  if (data.at !== null && data.at !== undefined) {
    const index = data.offsets.indexOf(Number(data.at));
    travel(index >= 0 ? index : data.offsets.length - 1);
  }
  const loop = async () => {
    await refresh();
    if (selected && !travelling) {
      const mine = attempts.filter((a) => a.task === selected);
      const last = mine[mine.length - 1];
      if (last && last.attempt > 0) followLog(selected, last.attempt, !last.ended_at);
    }
    setTimeout(loop, FINAL.includes($("#instance-state").textContent) && !travelling ? FINAL_POLL_MS : POLL_MS);
  };
  setTimeout(loop, POLL_MS);
}

// ---- the SQL console

function sqlPage() {
  const form = $("#sql-form");
  const csv = () => { $("#csv").href = "/api/sql.csv?sql=" + encodeURIComponent($("#sql").value); };
  $("#sql").addEventListener("input", csv);
  csv();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const status = $("#sql-status");
    status.textContent = "running…";
    const response = await fetch("/query", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sql: $("#sql").value, max_rows: 1000 }),
    });
    const answer = await response.json();
    const table = $("#sql-result");
    table.replaceChildren();
    if (!response.ok) { status.textContent = answer.error; status.className = "error"; return; }
    status.className = "muted";
    status.textContent = answer.row_count + " rows" + (answer.truncated ? " (first 1000)" : "");
    const head = el("thead"), hr = el("tr");
    answer.columns.forEach((c, i) => hr.appendChild(el("th", c + " " + answer.types[i].toLowerCase())));
    head.appendChild(hr);
    const body = el("tbody");
    for (const row of answer.rows) {
      const tr = el("tr");
      for (const v of row) tr.appendChild(el("td", v !== null && typeof v === "object" ? JSON.stringify(v) : v));
      body.appendChild(tr);
    }
    table.append(head, body);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  const page = document.body.dataset.page;
  if (page === "overview") pollOverview();
  if (page === "instance") instancePage();
  if (page === "sql") sqlPage();
  if (page === "workflow") {
    for (const button of $all("button.action[data-workflow]")) {
      button.addEventListener("click", () => act(button.dataset.action, { workflow: button.dataset.workflow }));
    }
  }
});
