// campusguard console: control room (live alarm board from the SSE stream, KPIs), labs
// (chemical cabinets, 24 h charts), bureau and school-safety ticket views. Plain JS, no build
// step; everything it reads comes from the gateway's own API with the session cookie.
(function () {
  "use strict";
  const I = window.CG_I18N;
  const t = I.t;
  const CLASS_ORDER = { fire: 0, gas: 1, supervisory: 2, fault: 3 };
  const SEVERITY_ORDER = { alarm: 0, warning: 1 };
  const CABINET_POINTS = ["temp_c", "rh_pct", "voc_ppm", "lel_pct", "fan_on", "airflow_mps", "door_open"];
  const UNITS = { temp_c: "°C", rh_pct: "%", voc_ppm: "ppm", lel_pct: "%", airflow_mps: "m/s" };
  const TICKET_STATES = ["registered", "rectifying", "deferred", "reported", "closed"];
  const CATEGORIES = ["fire", "security", "lab_chemical", "food_water", "building", "traffic", "other"];
  const GRADES = ["general", "major"];
  const VIEWS_BY_ROLE = {
    operator: ["control", "lab"],
    lab_manager: ["lab", "control"],
    school_safety: ["school", "control", "lab"],
    bureau: ["bureau", "control", "lab"],
    admin: ["control", "lab", "bureau", "school"],
  };

  const state = {
    me: null,
    alarms: new Map(),   // id → alarm (open ones)
    drills: new Map(),   // id → active drill
    devices: new Map(),  // "school/device" → device entry
    view: null,
    soundMuted: localStorage.getItem("cg_sound") === "off",
    audio: null,
    source: null,
    streamUp: false,
    reconnectDelay: 1000,
  };

  // ---- small helpers -------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function svg(tag, attrs) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  }
  async function api(path, options) {
    const resp = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    if (resp.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const err = new Error((body && body.message) || resp.statusText);
      err.status = resp.status;
      throw err;
    }
    return body;
  }
  function post(path, body) {
    return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
  }
  function fmtValue(v, point) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "boolean") {
      if (point === "door_open") return v ? t("open") : t("closed");
      return v ? t("on") : t("off");
    }
    const n = Number(v);
    return (Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/0$/, "")) + (UNITS[point] ? " " + UNITS[point] : "");
  }
  function place(school, device) {
    const d = state.devices.get(school + "/" + device);
    if (!d) return "";
    return [d.building, d.room, d.name].filter(Boolean).join(" · ");
  }
  function deviceLabel(d) { return d.name || d.id; }

  // ---- shell: session, tabs, language --------------------------------------------------
  async function boot() {
    I.apply();
    try {
      state.me = await api("/api/v1/session");
    } catch (e) { return; }
    document.getElementById("who").textContent = state.me.name + " (" + state.me.role + ")";
    document.body.dataset.role = state.me.role;
    document.getElementById("logout").addEventListener("click", async () => {
      await fetch("/logout", { method: "POST", credentials: "same-origin" });
      location.href = "/login";
    });
    document.getElementById("lang-switch").addEventListener("click", () => {
      I.setLang(I.lang === "en" ? "zh-CN" : "en");
      I.apply(); renderTabs(); renderSoundToggle(); renderStreamState(); rerender();
    });
    document.getElementById("sound-toggle").addEventListener("click", () => {
      state.soundMuted = !state.soundMuted;
      localStorage.setItem("cg_sound", state.soundMuted ? "off" : "on");
      ensureAudio(); renderSoundToggle(); updateSound();
    });
    setupDialogs();
    renderTabs(); renderSoundToggle(); renderStreamState();
    window.addEventListener("hashchange", route);
    await loadDevices();
    await loadAlarms();
    await loadDrills();
    openStream();
    // The machine lost its network: say so now rather than when the next keep-alive is missed.
    window.addEventListener("offline", () => {
      if (state.source) state.source.close();
      state.source = null; state.streamUp = false; renderStreamState();
    });
    window.addEventListener("online", () => openStream());
    setInterval(loadKpis, 30000);
    setInterval(loadDevices, 60000);
    setInterval(beepIfNeeded, 2000);
    route();
  }
  function views() { return VIEWS_BY_ROLE[state.me.role] || ["control"]; }
  function renderTabs() {
    const nav = document.getElementById("tabs");
    nav.replaceChildren(...views().map((v) => h("a", { href: "#/" + v, id: "tab-" + v, class: state.view === v ? "active" : null }, t("view_" + v))));
  }
  function route() {
    const wanted = (location.hash || "").replace(/^#\//, "");
    const view = views().includes(wanted) ? wanted : views()[0];
    state.view = view;
    document.querySelectorAll(".view").forEach((s) => { s.hidden = s.id !== "view-" + view; });
    document.body.dataset.view = view;
    renderTabs();
    rerender();
  }
  function rerender() {
    if (state.view === "control") { renderBoard(); loadKpis(); }
    else if (state.view === "lab") loadLab();
    else if (state.view === "bureau") loadBureau();
    else if (state.view === "school") loadSchool();
  }

  // ---- alarms: list + SSE stream -------------------------------------------------------
  async function loadDevices() {
    try {
      const list = await api("/api/v1/devices");
      state.devices = new Map(list.map((d) => [d.school + "/" + d.id, d]));
    } catch (e) { /* the board still works without places */ }
  }
  async function loadAlarms() {
    try {
      const list = await api("/api/v1/alarms?state=active");
      state.alarms = new Map(list.filter((a) => a.state !== "cleared").map((a) => [a.id, a]));
    } catch (e) { return; }
    renderBoard(); updateSound();
  }
  function openStream() {
    if (state.source) state.source.close();
    const source = new EventSource("/api/v1/alarms/stream");
    state.source = source;
    source.addEventListener("open", () => {
      state.streamUp = true; state.reconnectDelay = 1000; renderStreamState();
      loadAlarms(); loadDrills(); // catch up on what happened while disconnected
    });
    source.addEventListener("alarm", (ev) => {
      let a;
      try { a = JSON.parse(ev.data); } catch (e) { return; }
      if (a.state === "cleared") state.alarms.delete(a.id); else state.alarms.set(a.id, a);
      if (!state.devices.has(a.school + "/" + a.device)) loadDevices();
      if (state.view === "control") renderBoard();
      if (state.view === "lab") renderLabStates();
      updateSound();
    });
    source.addEventListener("drill", (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      if (d.change === "started") state.drills.set(d.id, d); else state.drills.delete(d.id);
      if (state.view === "control") renderDrills();
    });
    source.addEventListener("resync", () => { loadAlarms(); loadDrills(); });
    source.addEventListener("error", () => {
      state.streamUp = false; renderStreamState();
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. the gateway restarted with an error): retry with backoff.
        setTimeout(() => { if (state.source === source) openStream(); }, state.reconnectDelay);
        state.reconnectDelay = Math.min(state.reconnectDelay * 2, 15000);
      }
    });
  }
  function renderStreamState() {
    const el = document.getElementById("stream-state");
    el.className = "stream " + (state.streamUp ? "up" : "down");
    el.dataset.state = state.streamUp ? "connected" : "disconnected";
    el.textContent = state.streamUp ? t("stream_ok") : t("stream_down");
  }
  function sortAlarms(list) {
    return list.sort((a, b) => (CLASS_ORDER[a.class] - CLASS_ORDER[b.class])
      || ((SEVERITY_ORDER[a.severity] ?? 2) - (SEVERITY_ORDER[b.severity] ?? 2))
      || (b.raised_at - a.raised_at));
  }
  function isShelved(a) { return a.shelved && a.shelved.until_ms > Date.now(); }
  // Unacknowledged real alarms: these ring and one of them is the first-out. A drill alarm is
  // shown (marked 演练) and needs its acknowledgement, but neither rings nor flashes.
  function unackedAlarms() {
    return [...state.alarms.values()].filter((a) => (a.state === "active_unacked" || a.state === "cleared_unacked") && !isShelved(a) && !a.drill);
  }
  function alarmRow(a, firstId) {
    const unacked = a.state === "active_unacked" || a.state === "cleared_unacked";
    const latched = (a.class === "fire" || a.class === "gas") && !a.condition_active && a.state !== "cleared";
    const actions = [];
    if (canHandleAlarms()) {
      if (unacked) actions.push(h("button", { class: "ack", onclick: () => alarmAction(a, "ack") }, t("ack")));
      if (!isShelved(a)) actions.push(h("button", { class: "shelve", onclick: () => alarmAction(a, "shelve") }, t("shelve")));
      if (latched) actions.push(h("button", { class: "reset", onclick: () => alarmAction(a, "reset") }, t("reset")));
    }
    return h("tr", { class: ["alarm", a.class, unacked ? "unacked" : "acked", a.drill ? "drill" : ""].join(" ").trim(),
      dataset: { id: a.id, state: a.state, class: a.class, sensor: a.sensor, rule: a.rule, drill: String(!!a.drill) } },
      h("td", {}, h("span", { class: "badge " + a.class }, t("class_" + a.class)), " ",
        a.id === firstId ? h("span", { class: "badge first" }, t("first_alarm")) : null,
        a.drill ? h("span", { class: "badge drill" }, t("drill")) : null),
      h("td", {}, a.school),
      h("td", {}, place(a.school, a.device)),
      h("td", { class: "mono" }, a.device + "/" + a.point),
      h("td", {}, a.message),
      h("td", {}, fmtValue(a.value, a.point)),
      h("td", {}, I.fmtTime(a.raised_at)),
      h("td", { class: "state" }, t("state_" + a.state), latched ? h("div", {}, h("span", { class: "badge latched" }, t("latched"))) : null,
        isShelved(a) ? h("div", {}, t("shelved_until") + " " + I.fmtTime(a.shelved.until_ms)) : null),
      h("td", { class: "actions" }, actions));
  }
  function renderBoard() {
    const all = sortAlarms([...state.alarms.values()]);
    const live = all.filter((a) => !isShelved(a));
    const shelved = all.filter(isShelved);
    // The first-out alarm: the earliest raised among those not yet acknowledged.
    const first = unackedAlarms().sort((a, b) => a.raised_at - b.raised_at)[0];
    document.getElementById("board-body").replaceChildren(...live.map((a) => alarmRow(a, first && first.id)));
    document.getElementById("board-empty").hidden = live.length > 0;
    document.getElementById("shelved-body").replaceChildren(...shelved.map((a) => alarmRow(a, null)));
    document.getElementById("shelved-count").textContent = shelved.length;
    renderSummary(live);
    renderDrills();
  }
  function renderSummary(live) {
    const bySchool = new Map();
    for (const a of live) {
      const row = bySchool.get(a.school) || { fire: 0, gas: 0, supervisory: 0, fault: 0, unacked: 0, buildings: new Map() };
      row[a.class] += 1;
      if (a.state === "active_unacked" || a.state === "cleared_unacked") row.unacked += 1;
      const d = state.devices.get(a.school + "/" + a.device);
      const b = (d && d.building) || "–";
      row.buildings.set(b, (row.buildings.get(b) || 0) + 1);
      bySchool.set(a.school, row);
    }
    const rows = [...bySchool.entries()].sort().map(([school, r]) => h("tr", { dataset: { school } },
      h("td", {}, h("b", {}, school), h("div", { class: "where" }, [...r.buildings.entries()].map(([b, n]) => b + ": " + n).join("  "))),
      h("td", {}, r.fire ? h("span", { class: "badge fire" }, r.fire) : "0"),
      h("td", {}, r.gas ? h("span", { class: "badge gas" }, r.gas) : "0"),
      h("td", {}, String(r.supervisory)), h("td", {}, String(r.fault)), h("td", {}, String(r.unacked))));
    document.getElementById("summary-body").replaceChildren(...rows);
  }
  // ---- drill mode: a switch per school and per building, with its expiry -----------------
  async function loadDrills() {
    try {
      const list = await api("/api/v1/drills");
      state.drills = new Map(list.map((d) => [d.id, d]));
    } catch (e) { return; }
    if (state.view === "control") renderDrills();
  }
  function drillFor(school, building) {
    return [...state.drills.values()].find((d) => d.school === school && (d.building || "") === building);
  }
  function renderDrills() {
    const box = document.getElementById("drills");
    const scopes = new Map(); // school → Set of buildings
    for (const d of state.devices.values()) {
      const set = scopes.get(d.school) || new Set();
      if (d.building) set.add(d.building);
      scopes.set(d.school, set);
    }
    for (const d of state.drills.values()) {
      const set = scopes.get(d.school) || new Set();
      if (d.building) set.add(d.building);
      scopes.set(d.school, set);
    }
    if (!scopes.size) { box.replaceChildren(h("p", { class: "empty" }, t("no_drill_scopes"))); return; }
    const scopeRow = (school, building) => {
      const d = drillFor(school, building);
      const actions = [];
      if (canHandleAlarms()) {
        actions.push(d ? h("button", { class: "drill-end", onclick: () => endDrill(d) }, t("drill_end"))
          : h("button", { class: "drill-start", onclick: () => startDrill(school, building) }, t("drill_start")));
      }
      return h("div", { class: "drill-scope" + (building ? " building" : ""), dataset: { school, building, active: String(!!d), drill: d ? d.id : "" } },
        h("span", { class: "name" }, building || t("drill_whole_school")),
        d ? h("span", { class: "badge drill" }, t("drill_active")) : null,
        d ? h("span", { class: "until", title: t("drill_by") + " " + d.started_by + ": " + d.reason, dataset: { until: d.until } }, t("drill_until") + " " + I.fmtTime(d.until)) : null,
        actions);
    };
    box.replaceChildren(...[...scopes.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([school, buildings]) =>
      h("div", { class: "drill-school", dataset: { school } }, h("b", {}, school), scopeRow(school, ""),
        [...buildings].sort().map((b) => scopeRow(school, b)))));
  }
  function startDrill(school, building) {
    openDialog(t("dialog_drill") + " · " + school + (building ? " · " + building : " · " + t("drill_whole_school")), [
      field("duration", t("duration"), "select", { options: [["30m", "30 min"], ["1h", "1 h"], ["2h", "2 h"], ["4h", "4 h"], ["8h", "8 h"], ["24h", "24 h"]] }),
      field("reason", t("reason"), "textarea", { required: true, maxlength: 1000 })],
      async (f) => {
        const d = await post("/api/v1/drills", { school, building: building || null, duration: f.duration, reason: f.reason });
        state.drills.set(d.id, d); renderDrills();
      });
  }
  async function endDrill(d) {
    try { await api("/api/v1/drills/" + d.id, { method: "DELETE" }); }
    catch (e) { if (e.status !== 404) { alert(t("action_failed") + ": " + e.message); return; } }
    state.drills.delete(d.id); renderDrills();
  }
  function canHandleAlarms() { return ["operator", "lab_manager", "admin"].includes(state.me.role); }

  // ---- sound: a WebAudio beep every 2 s while unacknowledged alarms exist -----------------
  function ensureAudio() {
    if (!state.audio && window.AudioContext) {
      try { state.audio = new AudioContext(); } catch (e) { state.audio = null; }
    }
    if (state.audio && state.audio.state === "suspended") state.audio.resume().catch(() => {});
  }
  function updateSound() {
    const ringing = unackedAlarms().length > 0;
    document.body.dataset.sound = ringing && !state.soundMuted ? "on" : "off";
    document.body.dataset.unacked = String(unackedAlarms().length);
    document.getElementById("sound-flag").hidden = !ringing;
  }
  function beepIfNeeded() {
    updateSound();
    if (document.body.dataset.sound !== "on") return;
    ensureAudio();
    const ctx = state.audio;
    if (!ctx || ctx.state !== "running") return;
    const fire = unackedAlarms().some((a) => a.class === "fire" || a.class === "gas");
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = fire ? 960 : 660;
    gain.gain.setValueAtTime(0.08, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.4);
    osc.connect(gain).connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + 0.4);
    document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  }
  function renderSoundToggle() {
    document.getElementById("sound-toggle").textContent = state.soundMuted ? t("sound_off") : t("sound_on");
  }
  document.addEventListener("click", ensureAudio, { once: true });

  // ---- dialogs -------------------------------------------------------------------------
  let dialogSubmit = null;
  function setupDialogs() {
    const dlg = document.getElementById("action-dialog");
    document.getElementById("action-cancel").addEventListener("click", () => dlg.close());
    document.getElementById("action-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = document.getElementById("action-error");
      err.hidden = true;
      const data = Object.fromEntries(new FormData(ev.target).entries());
      try { await dialogSubmit(data); dlg.close(); }
      catch (e) { err.textContent = t("action_failed") + ": " + e.message; err.hidden = false; }
    });
    document.getElementById("ticket-close").addEventListener("click", () => document.getElementById("ticket-dialog").close());
  }
  function openDialog(title, fields, submit) {
    document.getElementById("action-title").textContent = title;
    document.getElementById("action-fields").replaceChildren(...fields);
    document.getElementById("action-error").hidden = true;
    dialogSubmit = submit;
    document.getElementById("action-dialog").showModal();
    const first = document.querySelector("#action-fields input, #action-fields textarea");
    if (first) first.focus();
  }
  function field(name, label, kind, extra) {
    const input = kind === "textarea" ? h("textarea", Object.assign({ name, rows: 3 }, extra || {}))
      : kind === "select" ? h("select", { name }, (extra.options || []).map(([v, l]) => h("option", { value: v }, l)))
      : h("input", Object.assign({ name, type: kind || "text" }, extra || {}));
    return h("label", {}, h("span", {}, label), input);
  }
  function alarmAction(a, action) {
    const path = "/api/v1/alarms/" + a.id + "/" + action;
    const done = (ev) => { state.alarms.set(ev.id, ev); if (ev.state === "cleared") state.alarms.delete(ev.id); renderBoard(); updateSound(); };
    if (action === "ack") {
      openDialog(t("dialog_ack") + " #" + a.id, [field("comment", t("comment"), "textarea", { maxlength: 1000 })],
        async (d) => done(await post(path, d.comment ? { comment: d.comment } : {})));
    } else if (action === "shelve") {
      openDialog(t("dialog_shelve") + " #" + a.id, [
        field("duration", t("duration"), "select", { options: [["30m", "30 min"], ["1h", "1 h"], ["4h", "4 h"], ["8h", "8 h"], ["24h", "24 h"]] }),
        field("reason", t("reason"), "textarea", { required: true, maxlength: 1000 })],
        async (d) => done(await post(path, { duration: d.duration, reason: d.reason })));
    } else {
      openDialog(t("dialog_reset") + " #" + a.id, [field("comment", t("comment"), "textarea", { maxlength: 1000 }),
        h("label", {}, h("input", { type: "checkbox", name: "false_alarm", value: "true" }), " ", t("false_alarm"))],
        async (d) => done(await post(path, { comment: d.comment || null, false_alarm: d.false_alarm === "true" })));
    }
  }

  // ---- KPIs ----------------------------------------------------------------------------
  async function loadKpis() {
    if (state.view !== "control") return;
    let k;
    try { k = await api("/api/v1/alarms/kpis"); } catch (e) { return; }
    const kpi = (id, n, label, sub, bad) => h("div", { class: "kpi" + (bad ? " bad" : ""), id: "kpi-" + id },
      h("div", { class: "n" }, String(n)), h("div", { class: "l" }, label), sub ? h("div", { class: "l" }, sub) : null);
    document.getElementById("kpis").replaceChildren(
      kpi("rate", k.alarms_last_hour, t("kpi_rate"), t("kpi_guideline") + " · " + t("kpi_avg") + " " + k.alarms_per_hour_24h, k.over_guideline),
      kpi("floods", k.floods_24h, t("kpi_floods"), null, k.flood_active || k.floods_24h > 0),
      kpi("chatter", k.chattering.length, t("kpi_chatter"), k.chattering.slice(0, 2).map((c) => c.sensor).join(", "), k.chattering.length > 0),
      kpi("stale", k.stale.length, t("kpi_stale"), null, k.stale.length > 0));
  }

  // ---- lab view ------------------------------------------------------------------------
  let labTimer = null;
  let chartsAt = 0;
  async function loadLab() {
    clearTimeout(labTimer);
    if (state.view !== "lab") return;
    labTimer = setTimeout(loadLab, 5000);
    let sensors;
    try { sensors = await api("/api/v1/sensors"); } catch (e) { return; }
    const cabinets = new Map();
    for (const s of sensors) {
      if (s.profile !== "chem_cabinet") continue;
      const key = s.school + "/" + s.device;
      const c = cabinets.get(key) || { school: s.school, device: s.device, building: s.building, room: s.room, values: {} };
      c.values[s.point] = s;
      cabinets.set(key, c);
    }
    const box = document.getElementById("cabinets");
    document.getElementById("cabinets-empty").hidden = cabinets.size > 0;
    const refreshCharts = Date.now() - chartsAt > 60000;
    for (const [key, c] of [...cabinets.entries()].sort()) {
      let card = box.querySelector('[data-cabinet="' + CSS.escape(key) + '"]');
      if (!card) {
        const d = state.devices.get(key) || {};
        card = h("article", { class: "cabinet", dataset: { cabinet: key } },
          h("h3", {}, d.name || c.device), h("div", { class: "where" }, [c.school, c.building, c.room].filter(Boolean).join(" · ")),
          h("dl", {}, CABINET_POINTS.map((p) => h("div", { dataset: { point: p } }, h("dt", {}, t("p_" + p)),
            h("dd", { dataset: { sensor: key + "/" + p } }, "–")))),
          h("div", { class: "chart-title where" }, t("chart_24h")), svg("svg", { viewBox: "0 0 300 90", preserveAspectRatio: "none" }));
        box.append(card);
        chartsAt = 0;
      }
      for (const p of CABINET_POINTS) {
        const dd = card.querySelector('dd[data-sensor="' + CSS.escape(key + "/" + p) + '"]');
        const s = c.values[p];
        dd.textContent = s ? fmtValue(s.value, p) : "–";
        dd.dataset.value = s ? String(s.value) : "";
        dd.title = s ? I.fmtTime(s.ts) : "";
      }
      if (refreshCharts || chartsAt === 0) drawChart(card, key);
    }
    if (refreshCharts || chartsAt === 0) chartsAt = Date.now();
    renderLabStates();
  }
  function renderLabStates() {
    const rank = (c) => CLASS_ORDER[c] ?? 9;
    document.querySelectorAll(".cabinet").forEach((card) => {
      const key = card.dataset.cabinet;
      let worst = null;
      card.querySelectorAll("dl div").forEach((d) => d.classList.remove("alarmed"));
      for (const a of state.alarms.values()) {
        if (a.school + "/" + a.device !== key || isShelved(a)) continue;
        if (worst === null || rank(a.class) < rank(worst)) worst = a.class;
        const cell = card.querySelector('dl div[data-point="' + CSS.escape(a.point) + '"]');
        if (cell) cell.classList.add("alarmed");
      }
      card.className = "cabinet" + (worst ? " " + worst : "");
      card.dataset.state = worst || "ok";
    });
  }
  async function drawChart(card, key) {
    const to = Date.now();
    let body;
    try { body = await api("/api/v1/sensors/" + key + "/temp_c/history?from=" + (to - 86400000) + "&to=" + to + "&limit=20000"); }
    catch (e) { return; }
    const points = body.points.filter((p) => typeof p.value === "number");
    const chart = card.querySelector("svg");
    chart.replaceChildren();
    if (points.length < 2) {
      chart.append(Object.assign(svg("text", { x: 150, y: 48, "text-anchor": "middle" }), { textContent: t("no_data") }));
      return;
    }
    // The x axis spans the last 24 h, or less when the history is younger (a new device).
    const from = Math.max(to - 86400000, points[0].ts);
    const span = Math.max(to - from, 60000);
    // At most ~300 points: keep the min and max of each bucket so spikes stay visible.
    const buckets = 150;
    const byBucket = new Map();
    for (const p of points) {
      const b = Math.min(buckets - 1, Math.max(0, Math.floor(((p.ts - from) / span) * buckets)));
      const cur = byBucket.get(b);
      if (!cur) byBucket.set(b, { min: p, max: p });
      else { if (p.value < cur.min.value) cur.min = p; if (p.value > cur.max.value) cur.max = p; }
    }
    const kept = [...byBucket.values()].flatMap((b) => (b.min === b.max ? [b.min] : [b.min, b.max])).sort((a, b) => a.ts - b.ts);
    let lo = Math.min(...kept.map((p) => p.value)), hi = Math.max(...kept.map((p) => p.value));
    if (hi - lo < 1) { hi += 0.5; lo -= 0.5; }
    const x = (ts) => ((ts - from) / span) * 300;
    const y = (v) => 80 - ((v - lo) / (hi - lo)) * 70;
    chart.append(svg("polyline", { points: kept.map((p) => x(p.ts).toFixed(1) + "," + y(p.value).toFixed(1)).join(" ") }));
    const label = (tx, ty, text, anchor) => { const e = svg("text", { x: tx, y: ty, "text-anchor": anchor || "start" }); e.textContent = text; return e; };
    const hhmm = (ms) => new Date(ms).toLocaleTimeString(I.lang === "en" ? "en-GB" : "zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false });
    chart.append(label(2, 10, hi.toFixed(1) + " °C"), label(2, 88, lo.toFixed(1) + " °C"),
      label(48, 88, "← " + hhmm(from)), label(298, 88, hhmm(to), "end"));
    chart.dataset.points = String(points.length);
  }

  // ---- tickets (bureau and school safety) ----------------------------------------------
  function ticketsDisabled(box) {
    box.replaceChildren(h("div", { class: "empty tickets-disabled" }, h("h3", {}, t("tickets_disabled")), h("p", {}, t("tickets_disabled_hint"))));
  }
  function ticketId(tk) { return tk.id ?? tk.number; }
  function deadlineOf(tk) { return tk.deadline_at ?? tk.deadline; }
  function isOverdue(tk) {
    if (typeof tk.overdue === "boolean") return tk.overdue;
    const dl = deadlineOf(tk) ? new Date(deadlineOf(tk)).getTime() : NaN;
    return tk.state !== "closed" && !isNaN(dl) && dl < Date.now();
  }
  function ticketTable(list, actionsFor) {
    if (!list.length) return h("p", { class: "empty" }, t("no_tickets"));
    return h("table", { class: "tickets" },
      h("thead", {}, h("tr", {}, ["t_number", "t_school", "t_location", "t_category", "t_grade", "t_state", "t_deadline", "t_supervised", "col_actions"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, list.map((tk) => h("tr", { class: isOverdue(tk) ? "overdue" : null, dataset: { ticket: ticketId(tk), state: tk.state || "" } },
        h("td", {}, h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); showTicket(tk); } }, tk.number || ticketId(tk))),
        h("td", {}, tk.school || ""), h("td", {}, tk.location || ""),
        h("td", {}, tk.category ? t("c_" + tk.category) : ""), h("td", {}, tk.grade ? t("g_" + tk.grade) : ""),
        h("td", {}, tk.state ? t("ts_" + tk.state) : "", isOverdue(tk) ? h("div", {}, h("span", { class: "badge fire" }, t("overdue"))) : null),
        h("td", {}, deadlineOf(tk) ? I.fmtTime(deadlineOf(tk)) : ""),
        h("td", {}, tk.supervised ? "✔" : ""),
        h("td", { class: "actions" }, actionsFor(tk))))));
  }
  // A history entry's action in the user's language; an unknown one as the API wrote it.
  function historyAction(action) {
    const label = t("a_" + action);
    return label === "a_" + action ? action : label;
  }
  async function showTicket(tk) {
    const id = encodeURIComponent(ticketId(tk));
    const box = document.getElementById("ticket-detail");
    box.replaceChildren(h("p", {}, "…"));
    document.getElementById("ticket-dialog").showModal();
    try {
      const [detail, history] = await Promise.all([api("/api/v1/tickets/" + id), api("/api/v1/tickets/" + id + "/history").catch(() => [])]);
      const rows = [["t_number", detail.number || detail.id], ["t_school", detail.school], ["t_location", detail.location],
        ["t_description", detail.description], ["t_category", detail.category && t("c_" + detail.category)],
        ["t_grade", detail.grade && t("g_" + detail.grade)], ["t_state", detail.state && t("ts_" + detail.state)],
        ["t_unit", detail.responsible_unit], ["t_person", detail.responsible_person], ["t_measures", detail.measures],
        ["t_deadline", deadlineOf(detail) && I.fmtTime(deadlineOf(detail))], ["t_found", detail.found_at && I.fmtTime(detail.found_at)]];
      const items = Array.isArray(history) ? history : (history.items || history.history || []);
      box.replaceChildren(h("h3", {}, detail.number || id),
        h("table", {}, rows.filter(([, v]) => v).map(([k, v]) => h("tr", {}, h("th", {}, t(k)), h("td", {}, v)))),
        h("h3", {}, t("t_history")),
        h("table", { class: "history" }, items.map((e) => h("tr", {}, h("td", {}, I.fmtTime(e.at || e.ts)), h("td", {}, e.actor || e.user || e.by || ""),
          h("td", {}, historyAction(e.action || e.transition || "")), h("td", {}, e.comment || e.reason || "")))));
    } catch (e) {
      box.replaceChildren(h("p", { class: "error" }, e.status === 404 ? t("tickets_disabled") : e.message));
    }
  }
  // The API's action body: the version the user saw (optimistic concurrency), the deadline as
  // Unix ms (end of the chosen local day), the rectification text.
  function actionBody(tk, d) {
    const body = { version: tk.version };
    for (const [k, v] of Object.entries(d)) {
      if (v === "" || v == null) continue;
      if (k === "deadline") body.deadline_at = new Date(v + "T23:59:59").getTime();
      else if (k === "done") body.rectification = v;
      else body[k] = v;
    }
    return body;
  }
  function ticketAction(tk, action, fields, reload) {
    openDialog(t("a_" + action) + " " + (tk.number || ticketId(tk)), fields, async (d) => {
      await post("/api/v1/tickets/" + encodeURIComponent(ticketId(tk)) + "/actions/" + action, actionBody(tk, d));
      reload();
    });
  }
  function ticketQuery(form) {
    const q = new URLSearchParams();
    for (const name of ["school", "state", "category", "grade"]) { const v = form.elements[name].value.trim(); if (v) q.set(name, v); }
    if (form.elements.overdue.checked) q.set("overdue", "true");
    if (form.elements.supervised.checked) q.set("supervised", "true");
    return q;
  }
  function ticketList(body) { return Array.isArray(body) ? body : (body.items || body.tickets || []); }
  let filtersReady = false;
  function setupFilters() {
    if (filtersReady) return;
    filtersReady = true;
    const form = document.getElementById("ticket-filters");
    const fill = (name, values, prefix) => form.elements[name].replaceChildren(h("option", { value: "" }, t("all")), ...values.map((v) => h("option", { value: v }, t(prefix + v))));
    fill("state", TICKET_STATES, "ts_"); fill("category", CATEGORIES, "c_"); fill("grade", GRADES, "g_");
    const now = new Date();
    form.elements.month.value = now.getFullYear() + "-" + String(now.getMonth() + 1).padStart(2, "0");
    form.addEventListener("submit", (ev) => { ev.preventDefault(); loadBureau(); });
    form.querySelectorAll("button.export").forEach((b) => b.addEventListener("click", () => {
      location.href = "/api/v1/tickets/export?month=" + encodeURIComponent(form.elements.month.value) + "&format=" + b.dataset.format;
    }));
  }
  async function loadBureau() {
    setupFilters();
    const box = document.getElementById("bureau-tickets");
    const stats = document.getElementById("bureau-stats");
    const form = document.getElementById("ticket-filters");
    let list;
    try { list = ticketList(await api("/api/v1/tickets?" + ticketQuery(form))); }
    catch (e) {
      if (e.status === 404) { ticketsDisabled(box); stats.replaceChildren(); return; }
      box.replaceChildren(h("p", { class: "error" }, e.message)); return;
    }
    const canSupervise = ["bureau", "admin"].includes(state.me.role);
    box.replaceChildren(ticketTable(list, (tk) => canSupervise && tk.state !== "closed"
      ? [h("button", { class: tk.supervised ? "unsupervise" : "supervise",
          onclick: async () => { try { await post("/api/v1/tickets/" + encodeURIComponent(ticketId(tk)) + "/actions/" + (tk.supervised ? "unsupervise" : "supervise"), { version: tk.version }); } catch (e) { alert(t("action_failed") + ": " + e.message); } loadBureau(); } },
          tk.supervised ? t("unsupervise") : t("supervise"))] : []));
    const per = new Map();
    for (const tk of list) {
      const r = per.get(tk.school) || { open: 0, overdue: 0, supervised: 0 };
      if (tk.state !== "closed") r.open += 1;
      if (isOverdue(tk)) r.overdue += 1;
      if (tk.supervised) r.supervised += 1;
      per.set(tk.school, r);
    }
    stats.replaceChildren(h("table", {}, h("tr", {}, ["school", "open_count", "overdue_count", "supervised_count"].map((k) => h("th", {}, t(k)))),
      [...per.entries()].sort().map(([s, r]) => h("tr", {}, h("td", {}, s), h("td", {}, String(r.open)), h("td", {}, String(r.overdue)), h("td", {}, String(r.supervised))))));
  }
  async function loadSchool() {
    const box = document.getElementById("school-tickets");
    let list;
    try { list = ticketList(await api("/api/v1/tickets")); }
    catch (e) {
      if (e.status === 404) { ticketsDisabled(box); return; }
      box.replaceChildren(h("p", { class: "error" }, e.message)); return;
    }
    list = list.filter((tk) => tk.state !== "closed");
    const reload = () => loadSchool();
    const deadline = () => field("deadline", t("f_deadline"), "date", { required: true });
    const forms = {
      registered: (tk) => [["assign", () => [field("responsible_unit", t("t_unit"), "text", { required: true }),
        field("responsible_person", t("t_person"), "text", { required: true }), field("measures", t("t_measures"), "textarea", { required: true }), deadline()]]],
      rectifying: (tk) => [["report", () => [field("done", t("f_done"), "textarea", { required: true })]],
        ["defer", () => [field("plan", t("f_plan"), "textarea", { required: true }), field("interim_measures", t("f_interim"), "textarea", { required: true }), deadline()]]],
      deferred: (tk) => [["assign", forms.registered(tk)[0][1]]],
      reported: (tk) => [["verify", () => [field("comment", t("comment"), "textarea")]],
        ["reject", () => [field("reason", t("reason"), "textarea", { required: true })]]],
    };
    box.replaceChildren(ticketTable(list, (tk) => (forms[tk.state] ? forms[tk.state](tk) : []).map(([action, make]) =>
      h("button", { class: "action-" + action, onclick: () => ticketAction(tk, action, make(), reload) }, t("a_" + action)))));
  }

  boot();
})();
