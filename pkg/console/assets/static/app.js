// Tandem console: renders the node's live status (server-sent events),
// its event log and the admin actions. No framework, no build step.
// Text is always set with textContent, never parsed as HTML.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const admin = document.querySelector('meta[name="role"]').content === "admin";
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

// A state is a word first; the colour (class) only repeats it.
function badge(text, kind) { return el("span", {class: "badge " + (kind || "")}, text); }
const stateKind = {MASTER: "good", BACKUP: "info", FAULT: "bad", INIT: "warn", UNKNOWN: "bad"};

function age(ms) {
  if (ms < 0 || ms === undefined) return "never";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function fact(label, ...value) { return el("div", {class: "fact"}, el("span", {class: "label"}, label), " ", ...value); }

function renderBoxes(st) {
  const boxes = $("boxes");
  boxes.replaceChildren();
  const me = el("article", {class: "box", id: "box-" + st.node, "data-node": st.node},
    el("h3", {}, st.node, " ", el("small", {}, "(this box)")),
    fact("State", el("span", {class: "badge state " + (stateKind[st.state] || "")}, st.state)),
    fact("Priority", st.priority),
    fact("In state for", age(st.state_age_ms)),
    fact("Config", st.config_hash.slice(0, 19) + "…"),
    fact("Holds", (st.holds && st.holds.length) ? st.holds.join("; ") : "none"));
  if (st.down_interfaces && st.down_interfaces.length) me.append(fact("Links down", badge(st.down_interfaces.join(", "), "bad")));
  boxes.append(me);
  for (const p of st.peers) {
    const name = p.name || p.address;
    const box = el("article", {class: "box", id: "box-" + name, "data-node": name},
      el("h3", {}, name, " ", el("small", {}, "(peer, " + p.address + ")")),
      fact("State", el("span", {class: "badge state " + (stateKind[p.state] || "")}, p.state),
        p.alive ? "" : " (last said " + (p.last_state || "nothing") + ")"),
      fact("Liveness", badge(p.alive ? "ALIVE" : "SILENT", p.alive ? "good" : "bad"), " last heard " + age(p.last_heard_ms) + " ago",
        p.member ? ", member " + p.member : ""),
      fact("Priority", p.priority),
      fact("Config", p.config_match ? badge("MATCH", "good") : badge("MISMATCH", "bad"),
        p.config_diff ? " differs in " + p.config_diff.join(", ") : ""));
    if (p.alive) box.append(fact("In state for", age(p.state_age_ms)));
    boxes.append(box);
  }
  const ps = st.persistence, sb = st.split_brain;
  const info = $("pairinfo");
  info.replaceChildren();
  if (ps.enabled || ps.state) {
    info.append(fact("Sync", badge(ps.state || "off", ps.state === "IN SYNC" ? "good" : "warn"),
      ps.reason ? " " + ps.reason : "", " · lag " + (ps.lag_ms || 0).toFixed(1) + " ms · " + ps.entries + " sticky entries",
      ps.conntrack_entries ? " · " + ps.conntrack_entries + " conntrack entries" : ""));
  }
  let split = "rival announcements " + sb.rival_announcements + " · address conflicts " + sb.address_conflicts;
  if (sb.last_conflict) split += " (last " + sb.last_conflict.vip + " from " + sb.last_conflict.mac + ")";
  const witness = sb.witness ? [" · witness " + sb.witness.address + " ", badge(sb.witness.reachable ? "REACHABLE" : "UNREACHABLE", sb.witness.reachable ? "good" : "bad")] : [];
  info.append(fact("Split-brain signals", split, ...witness));
  info.append(fact("Adverts", "sent " + st.adverts.sent + " · received " + st.adverts.received));
}

function renderVIPs(st) {
  const tb = $("vips").tBodies[0];
  tb.replaceChildren();
  for (const v of st.vips || []) {
    tb.append(el("tr", {}, el("td", {}, v.address), el("td", {}, v.interface),
      el("td", {}, v.held ? badge("HELD", "good") : badge("not held", "")) ));
  }
}

function serverRow(c, s) {
  let health = s.healthy ? badge("UP", "good") : badge("DOWN", "bad");
  const why = [];
  if (s.last_check) why.push(s.last_check + (s.last_check_at ? " (" + s.last_check_latency_ms.toFixed(1) + " ms)" : ""));
  if (s.check_warning) why.push("warning: " + s.check_warning);
  const row = el("tr", {"data-server": s.name},
    el("td", {}, s.name), el("td", {}, s.address),
    el("td", {class: "health"}, health, " ", el("span", {class: "why"}, why.join("; "))),
    el("td", {class: "admin"}, badge(s.admin, s.admin === "enabled" ? "" : "warn")),
    el("td", {class: "num"}, s.active_conns), el("td", {class: "num"}, s.total_conns),
    el("td", {class: "num"}, s.connect_failures));
  if (admin) {
    const td = el("td", {class: "actions"});
    for (const a of ["drain", "disable", "enable"]) {
      td.append(el("button", {type: "button", "data-action": a, "data-cluster": c.name, "data-server": s.name}, a));
    }
    row.append(td);
  }
  return row;
}

function renderClusters(st) {
  const root = $("clusters");
  root.replaceChildren();
  for (const c of st.clusters) {
    const refused = Object.entries(c.refused || {}).filter(([, v]) => v > 0).map(([k, v]) => k + " " + v).join(", ");
    const head = el("tr", {}, ...["Server", "Address", "Health (last check)", "Admin", "Active", "Total", "Connect failures"].map((h) => el("th", {}, h)));
    if (admin) head.append(el("th", {}, "Actions"));
    const tb = el("tbody");
    for (const s of c.servers) tb.append(serverRow(c, s));
    root.append(el("div", {class: "cluster", id: "cluster-" + c.name},
      el("h3", {}, c.name, " ", el("small", {}, c.vip + ":" + c.port + " " + c.protocol + (c.mode ? " " + c.mode : "") + (c.algorithm ? " " + c.algorithm : ""))),
      el("p", {}, c.serving ? badge("SERVING", "good") : badge("standing by", ""),
        " active " + c.active_conns + " · total " + c.total_conns + (refused ? " · refused: " + refused : "")),
      el("div", {class: "scroll"}, el("table", {}, el("thead", {}, head), tb))));
  }
}

let plotKey = "";
function renderPlots(st, force) {
  const key = st.clusters.map((c) => c.name).join(",");
  const root = $("plots");
  const t = Date.now();
  if (key === plotKey && !force) return;
  plotKey = key;
  root.replaceChildren();
  for (const c of st.clusters) {
    const fig = el("div", {class: "plotset"}, el("h3", {}, c.name));
    for (const m of ["conns", "rate", "latency"]) {
      fig.append(el("img", {src: "/plot/" + m + ".svg?cluster=" + encodeURIComponent(c.name) + "&t=" + t,
        alt: c.name + " " + m + " plot", class: "plot", loading: "lazy"}));
    }
    root.append(fig);
  }
}
setInterval(() => document.querySelectorAll("img.plot").forEach((img) => {
  img.src = img.src.replace(/&t=\d+/, "&t=" + Date.now());
}), 10000);

// Timeline
let events = [], eventsVersion = "";
function renderTimeline() {
  const kind = $("kind").value;
  const kinds = new Set(events.map((e) => e.kind));
  const sel = $("kind");
  for (const k of [...kinds].sort()) {
    if (![...sel.options].some((o) => o.value === k)) sel.append(el("option", {value: k}, k));
  }
  const ol = $("timeline");
  ol.replaceChildren();
  for (const e of events) {
    if (kind && e.kind !== kind) continue;
    ol.append(el("li", {"data-kind": e.kind}, el("time", {datetime: e.at}, new Date(e.at).toISOString().replace("T", " ").slice(0, 23)),
      " ", el("span", {class: "node"}, e.node), " ", badge(e.kind, ""), " ", e.message));
  }
}
$("kind").addEventListener("change", renderTimeline);

async function loadEvents(version) {
  if (version === eventsVersion) return;
  eventsVersion = version;
  const r = await fetch("/api/events", {credentials: "same-origin"});
  if (r.ok) { events = await r.json(); renderTimeline(); }
}

let last = null;
function render(msg) {
  last = msg.status;
  renderBoxes(msg.status);
  renderVIPs(msg.status);
  renderClusters(msg.status);
  renderPlots(msg.status, false);
  $("tlnote").textContent = msg.peer_events ? "Events of both boxes, newest first."
    : "Events of this box (" + msg.status.node + ") only, newest first: this node cannot fetch its peer's; open the peer's console for its own.";
  loadEvents(msg.events_version);
}

// Live feed, with a watchdog: no message for 3 s counts as lost.
let es = null, lastMsg = 0;
function setLost(lost) {
  $("lost").hidden = !lost;
  const c = $("conn");
  c.textContent = lost ? "DISCONNECTED" : "LIVE";
  c.className = "badge " + (lost ? "bad" : "good");
}
function connect() {
  if (es) es.close();
  es = new EventSource("/api/live");
  es.addEventListener("status", (ev) => {
    lastMsg = Date.now();
    setLost(false);
    render(JSON.parse(ev.data));
  });
  es.onerror = () => {
    setLost(true);
    if (es.readyState === EventSource.CLOSED) setTimeout(recheck, 2000);
  };
}
// After the feed closed for good (the node restarted: the session is
// gone), log in again, or reconnect when the node answers.
async function recheck() {
  try {
    const r = await fetch("/api/session", {credentials: "same-origin", signal: AbortSignal.timeout(3000)});
    if (r.status === 401) { location.href = "/login"; return; }
    if (r.ok) { connect(); return; }
  } catch (e) { /* still unreachable */ }
  setTimeout(recheck, 2000);
}
setInterval(() => {
  if (lastMsg && Date.now() - lastMsg > 3000) { lastMsg = 0; setLost(true); recheck(); }
}, 1000);

// Actions: confirm in a dialog, then POST with the CSRF token.
function say(text, bad) {
  const m = $("msg");
  m.textContent = text;
  m.className = "banner " + (bad ? "bad" : "good");
  m.hidden = false;
}
function confirmThen(text, fn) {
  const d = $("confirm");
  $("confirm-text").textContent = text;
  d.returnValue = "";
  d.onclose = () => { if (d.returnValue === "ok") fn(); };
  d.showModal();
}
async function post(url, done) {
  try {
    const r = await fetch(url, {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf}});
    const body = await r.json().catch(() => ({}));
    if (r.ok) say(done, false); else say(body.error || ("refused: HTTP " + r.status), true);
  } catch (e) { say("the node did not answer: " + e, true); }
}
document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-action]");
  if (b) {
    const {action, cluster, server} = b.dataset;
    confirmThen(action + " server " + server + " of cluster " + cluster + " on " + last.node + "?", () =>
      post("/api/clusters/" + encodeURIComponent(cluster) + "/servers/" + encodeURIComponent(server) + "/" + action,
        cluster + "/" + server + ": " + action + " done on " + last.node));
  }
  if (ev.target.id === "switchover") {
    confirmThen("Hand the VIPs from " + last.node + " to its peer (switchover)?", () =>
      post("/api/switchover", "switchover started: the peer takes the VIPs"));
  }
});

connect();
