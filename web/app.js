// campusguard console, the core: session, tabs and view switching, the API helpers, the live
// alarm stream (SSE), the alarm sound and the shared dialog. Plain JS, no build step;
// everything it reads comes from the gateway's own API with the session cookie.
//
// Each view is its own file (web/views/<name>.js, loaded after this one) and registers itself:
//
//   CG.view("lab", {
//     roles: { lab_manager: 1, operator: 2 },  // who sees the tab, and its place (1 = landing)
//     route: /^alarms\/(\d+)$/,               // or: a page of its own, no tab, shown for a
//                                              // matching #/… (captures in CG.state.params)
//     init() {},        // once, after login, before the first view is shown
//     show() {},        // the view became visible, or the language changed: render it
//     alarms() {},      // the open alarms (CG.state.alarms) changed while the view is visible
//     reload() {},      // the stream (re)connected or fell behind: reload what the view keeps
//   });
//
// and may listen to other stream events with CG.onStream("drill", (data) => …). A view's
// section is <section id="view-<name>" class="view"> in index.html, or made here if absent.
(function () {
  "use strict";
  const I = window.CG_I18N;
  const t = I.t;
  const CLASS_ORDER = { fire: 0, gas: 1, supervisory: 2, fault: 3 };
  const SEVERITY_ORDER = { alarm: 0, warning: 1 };
  const UNITS = { temp_c: "°C", rh_pct: "%", voc_ppm: "ppm", lel_pct: "%", airflow_mps: "m/s" };

  const state = {
    me: null,
    alarms: new Map(),   // id → alarm (open ones)
    devices: new Map(),  // "school/device" → device entry
    view: null,
    soundMuted: localStorage.getItem("cg_sound") === "off",
    // Flashing rows off: the user's choice, else the system's reduced-motion setting.
    reducedMotion: localStorage.getItem("cg_motion") ? localStorage.getItem("cg_motion") === "reduced"
      : !!(window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches),
    audio: null,
    source: null,
    streamUp: false,
    reconnectDelay: 1000,
  };
  const registered = new Map(); // view name → its definition
  const streamHandlers = new Map(); // SSE event type → [handler]

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
    if (resp.status === 401) { toLogin(); throw new Error("not logged in"); }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      // The server's message in the console's language, where it has one.
      const zh = I.lang === "zh-CN" && body && body.message_zh;
      const err = new Error(zh || (body && body.message) || resp.statusText);
      err.status = resp.status;
      throw err;
    }
    return body;
  }
  // The login page, which comes back here afterwards (a link from a notification opens the
  // alarm's page even when the phone was not logged in).
  function toLogin() {
    const here = location.pathname + location.search + location.hash;
    location.href = here === "/" ? "/login" : "/login?next=" + encodeURIComponent(here);
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
  function isShelved(a) { return a.shelved && a.shelved.until_ms > Date.now(); }
  // Unacknowledged real alarms: these ring and one of them is the first-out. A drill alarm is
  // shown (marked 演练) and needs its acknowledgement, but neither rings nor flashes.
  function unackedAlarms() {
    return [...state.alarms.values()].filter((a) => (a.state === "active_unacked" || a.state === "cleared_unacked") && !isShelved(a) && !a.drill);
  }
  function canHandleAlarms() { return ["operator", "lab_manager", "admin"].includes(state.me.role); }

  // ---- views ---------------------------------------------------------------------------
  function view(name, def) { registered.set(name, def); }
  function onStream(type, handler) {
    if (!streamHandlers.has(type)) streamHandlers.set(type, []);
    streamHandlers.get(type).push(handler);
    if (state.source) listen(state.source, type);
  }
  // Calls `hook` of every view (or only of the visible one).
  function each(hook, visibleOnly) {
    for (const [name, def] of registered) {
      if (visibleOnly && name !== state.view) continue;
      if (typeof def[hook] === "function") def[hook]();
    }
  }
  // The views this user sees, in tab order: the first is where the user lands.
  function views() {
    const role = state.me.role;
    const mine = [...registered.entries()].filter(([, def]) => def.roles && def.roles[role])
      .sort((a, b) => a[1].roles[role] - b[1].roles[role]).map(([name]) => name);
    return mine.length ? mine : ["control"];
  }
  function section(name) {
    let el = document.getElementById("view-" + name);
    if (!el) {
      el = h("section", { id: "view-" + name, class: "view", hidden: true });
      const last = [...document.querySelectorAll("section.view")].pop();
      if (last) last.after(el); else document.body.append(el);
    }
    return el;
  }

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
      I.apply(); renderTabs(); renderSoundToggle(); renderMotionToggle(); renderStreamState(); rerender();
    });
    document.getElementById("motion-toggle").addEventListener("click", () => {
      state.reducedMotion = !state.reducedMotion;
      localStorage.setItem("cg_motion", state.reducedMotion ? "reduced" : "normal");
      renderMotionToggle();
    });
    // Browsers start audio only after a click: after a reload the prompt asks for one.
    document.getElementById("sound-prompt").addEventListener("click", () => {
      ensureAudio();
      if (state.audio) state.audio.resume().then(updateSound, updateSound); else updateSound();
    });
    document.getElementById("sound-toggle").addEventListener("click", () => {
      state.soundMuted = !state.soundMuted;
      localStorage.setItem("cg_sound", state.soundMuted ? "off" : "on");
      ensureAudio(); renderSoundToggle(); updateSound();
    });
    setupDialogs();
    for (const name of registered.keys()) section(name);
    renderTabs(); renderSoundToggle(); renderMotionToggle(); renderStreamState();
    window.addEventListener("hashchange", route);
    await loadDevices();
    await loadAlarms();
    for (const def of registered.values()) if (typeof def.init === "function") await def.init();
    openStream();
    // The machine lost its network: say so now rather than when the next keep-alive is missed.
    window.addEventListener("offline", () => {
      if (state.source) state.source.close();
      state.source = null; state.streamUp = false; renderStreamState();
    });
    window.addEventListener("online", () => openStream());
    setInterval(loadDevices, 60000);
    setInterval(beepIfNeeded, 2000);
    route();
  }
  function renderTabs() {
    const nav = document.getElementById("tabs");
    nav.replaceChildren(...views().map((v) => h("a", { href: "#/" + v, id: "tab-" + v, class: state.view === v ? "active" : null }, t("view_" + v))));
  }
  function route() {
    const wanted = (location.hash || "").replace(/^#\//, "");
    for (const [name, def] of registered) {
      const m = def.route && wanted.match(def.route);
      if (m) { showView(name, m.slice(1)); return; }
    }
    showView(views().includes(wanted) ? wanted : views()[0], []);
  }
  function showView(view, params) {
    state.view = view;
    state.params = params;
    document.querySelectorAll(".view").forEach((s) => { s.hidden = s.id !== "view-" + view; });
    document.body.dataset.view = view;
    renderTabs();
    rerender();
  }
  function rerender() { each("show", true); }

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
    each("alarms", true); updateSound();
  }
  // Applies an alarm event (from the stream or an action's answer) to the open alarms.
  function alarmChanged(a) {
    if (a.state === "cleared") state.alarms.delete(a.id); else state.alarms.set(a.id, a);
    each("alarms", true); updateSound();
  }
  function listen(source, type) {
    source.addEventListener(type, (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      for (const handler of streamHandlers.get(type) || []) handler(data);
    });
  }
  function openStream() {
    if (state.source) state.source.close();
    const source = new EventSource("/api/v1/alarms/stream");
    state.source = source;
    source.addEventListener("open", () => {
      state.streamUp = true; state.reconnectDelay = 1000; renderStreamState();
      loadAlarms(); each("reload"); // catch up on what happened while disconnected
    });
    source.addEventListener("alarm", (ev) => {
      let a;
      try { a = JSON.parse(ev.data); } catch (e) { return; }
      if (!state.devices.has(a.school + "/" + a.device)) loadDevices();
      alarmChanged(a);
      if (a.transition === "raised" || a.transition === "reraised") announce(a);
    });
    for (const type of streamHandlers.keys()) listen(source, type);
    source.addEventListener("resync", () => { loadAlarms(); each("reload"); });
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
    // Sound is wanted but the browser has not let it start (no click since the reload).
    const blocked = !state.soundMuted && (!state.audio || state.audio.state !== "running");
    document.getElementById("sound-prompt").hidden = !(ringing && blocked);
  }
  function renderMotionToggle() {
    document.body.dataset.motion = state.reducedMotion ? "reduced" : "normal";
    const button = document.getElementById("motion-toggle");
    button.textContent = state.reducedMotion ? t("motion_reduced") : t("motion_normal");
    button.setAttribute("aria-pressed", String(state.reducedMotion));
  }
  // A new alarm is read out by screen readers (the live region in index.html).
  function announce(a) {
    const text = [t("class_" + a.class), a.drill ? t("drill") : null, a.school, place(a.school, a.device), a.message]
      .filter(Boolean).join(" ");
    const el = document.getElementById("alarm-announcer");
    el.textContent = "";
    // A new text node each time, so the same message twice is announced twice.
    setTimeout(() => { el.textContent = text; }, 50);
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

  // ---- the action dialog ---------------------------------------------------------------
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
  }
  // Opens the dialog with `fields`; `submit(values)` runs on submit, its error is shown.
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

  window.CG = {
    I, t, state, CLASS_ORDER, SEVERITY_ORDER,
    h, svg, api, post, fmtValue, place, isShelved, unackedAlarms, canHandleAlarms,
    view, onStream, alarmChanged, loadDevices, updateSound, openDialog, field,
  };
  // Every script has run (views registered) before the DOM is reported ready.
  document.addEventListener("DOMContentLoaded", boot);
})();
