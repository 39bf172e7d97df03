// campusguard console, incident reports (信息报告): the list (a tab of its own, and inside the
// bureau's and the school's views through CG.incidents.listInto), a report's page
// (#/incidents/<number>: read it, or edit and submit a draft) and the form a reset as a real
// fire leads to (#/incidents/new/<alarm id>: the alarm's report if it has one, else a form with
// time and place from the alarm; POST with the alarm's id fills in the draft the server opened
// meanwhile, or opens it). Usable on a phone. Texts in
// web/i18n/incident.js.
(function () {
  "use strict";
  const { I, t, state, h, api, post } = window.CG;
  let shown = null; // { kind: "list" | "report" | "new", … }
  let loading = null;

  function section() { return document.getElementById("view-incidents"); }
  function mayWrite() { return ["operator", "lab_manager", "school_safety", "admin"].includes(state.me.role); }
  function pad(n) { return String(n).padStart(2, "0"); }
  // Unix ms ↔ the value of a datetime-local input (local time).
  function toInput(ms) {
    if (!ms) return "";
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }
  function fromInput(v) { const ms = v ? new Date(v).getTime() : NaN; return isNaN(ms) ? null : ms; }
  function statusBadge(i) {
    return h("span", { class: "badge incident-" + i.status, id: null }, t("inc_status_" + i.status));
  }

  // ---- the list ------------------------------------------------------------------------
  function table(list) {
    if (!list.length) return h("p", { class: "empty" }, t("no_incidents"));
    return h("table", { class: "tickets incidents" },
      h("thead", {}, h("tr", {}, ["inc_number", "inc_school", "inc_occurred", "inc_location", "inc_casualties", "inc_119_by", "inc_status"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, list.map((i) => h("tr", { dataset: { incident: i.id, status: i.status, school: i.school } },
        h("td", {}, h("a", { href: "#/incidents/" + encodeURIComponent(i.id) }, i.id)),
        h("td", {}, i.school_name || i.school),
        h("td", {}, I.fmtTime(i.occurred_at)),
        h("td", {}, i.location),
        h("td", {}, t("inc_deaths") + " " + i.deaths + " · " + t("inc_injuries") + " " + i.injuries),
        h("td", {}, i.reported_119_by ? i.reported_119_by + " · " + I.fmtTime(i.reported_119_at) : "–"),
        h("td", {}, statusBadge(i))))));
  }
  // Fills `box` with the reports in the caller's scope (the API scopes them).
  async function listInto(box, query) {
    if (!box) return;
    let body;
    try { body = await api("/api/v1/incidents" + (query ? "?" + query : "")); }
    catch (e) { box.replaceChildren(h("p", { class: "error" }, e.message)); return; }
    box.replaceChildren(h("h2", {}, t("incidents_title")), table(body.incidents || []));
  }

  // ---- a report: read, or edit a draft ---------------------------------------------------
  function facts(i) {
    const row = (k, v) => (v === null || v === undefined || v === "") ? null : [h("dt", {}, t(k)), h("dd", {}, v)];
    return h("dl", { class: "alarm-facts", id: "incident-facts" }, [
      row("inc_school", i.school_name || i.school), row("inc_occurred", I.fmtTime(i.occurred_at)),
      row("inc_location", i.location), row("inc_device", i.device),
      row("inc_alarm", i.alarm_id ? h("a", { href: "#/alarms/" + i.alarm_id }, "#" + i.alarm_id) : null),
      row("inc_what", i.what_happened), row("inc_actions", i.actions_taken),
      row("inc_casualties", t("inc_deaths") + " " + i.deaths + " · " + t("inc_injuries") + " " + i.injuries),
      row("inc_119_by", i.reported_119_by), row("inc_119_at", i.reported_119_at ? I.fmtTime(i.reported_119_at) : null),
      row("inc_submitted_by", i.submitted_by ? i.submitted_by + " · " + I.fmtTime(i.submitted_at) : null),
      row("inc_updated", i.updated_by + " · " + I.fmtTime(i.updated_at)),
    ].filter(Boolean).flat());
  }
  function input(name, label, attrs, value) {
    const el = attrs.kind === "textarea"
      ? h("textarea", { name, id: "incident-" + name, rows: 4, maxlength: attrs.maxlength || 4000 }, value || "")
      : h("input", Object.assign({ name, id: "incident-" + name, value: value ?? "" }, attrs));
    return h("label", {}, h("span", {}, t(label)), el);
  }
  // The form of a draft (`i`) or of a new report for an alarm (`alarm`, `i` = the prefill).
  function form(i, alarmId) {
    const error = h("p", { class: "error", id: "incident-error", hidden: true });
    const el = h("form", { class: "incident-form", id: "incident-form" },
      input("occurred_at", "inc_occurred", { type: "datetime-local", required: true }, toInput(i.occurred_at)),
      input("building", "inc_building", { maxlength: 200 }, i.building),
      input("room", "inc_room", { maxlength: 200 }, i.room),
      input("location", "inc_location", { maxlength: 200 }, i.location),
      input("what_happened", "inc_what", { kind: "textarea" }, i.what_happened),
      input("actions_taken", "inc_actions", { kind: "textarea" }, i.actions_taken),
      h("div", { class: "pair" },
        input("deaths", "inc_deaths", { type: "number", min: 0, max: 10000, step: 1, required: true }, i.deaths ?? 0),
        input("injuries", "inc_injuries", { type: "number", min: 0, max: 10000, step: 1, required: true }, i.injuries ?? 0)),
      input("reported_119_by", "inc_119_by", { maxlength: 100 }, i.reported_119_by),
      input("reported_119_at", "inc_119_at", { type: "datetime-local" }, toInput(i.reported_119_at)),
      h("p", { class: "hint" }, t("inc_hint_119")),
      error,
      h("p", { class: "buttons" },
        h("button", { type: "submit", id: "incident-save", value: "draft" }, t("inc_save")),
        h("button", { type: "submit", id: "incident-submit", class: "primary", value: "submitted" }, t("inc_submit"))));
    el.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const status = ev.submitter && ev.submitter.value === "submitted" ? "submitted" : "draft";
      const f = el.elements;
      // A time input holds minutes: a time left as it was prefilled keeps its seconds.
      const changed = (input) => input.value !== input.defaultValue;
      const body = {
        occurred_at: changed(f.occurred_at) ? fromInput(f.occurred_at.value) : null,
        building: f.building.value, room: f.room.value, location: f.location.value,
        what_happened: f.what_happened.value, actions_taken: f.actions_taken.value,
        deaths: Number(f.deaths.value), injuries: Number(f.injuries.value),
        reported_119_by: f.reported_119_by.value || null, reported_119_at: changed(f.reported_119_at) ? fromInput(f.reported_119_at.value) : null,
        status,
      };
      for (const k of Object.keys(body)) if (body[k] === null || body[k] === "") delete body[k];
      error.hidden = true;
      el.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      try {
        const saved = alarmId
          ? await post("/api/v1/incidents", Object.assign({ alarm_id: alarmId }, body))
          : await api("/api/v1/incidents/" + encodeURIComponent(i.id), {
            method: "PATCH", headers: { "Content-Type": "application/json" },
            body: JSON.stringify(Object.assign({ version: i.version }, body)),
          });
        if (location.hash === "#/incidents/" + saved.id) load(saved.id);
        else location.hash = "#/incidents/" + encodeURIComponent(saved.id);
      } catch (e) {
        error.textContent = t("action_failed") + ": " + e.message; error.hidden = false;
        el.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      }
    });
    return el;
  }

  // "What happened", first words: the alarm as raised (its message changes when the value
  // returns to normal, so the raise's reading is taken from the journal) and the reset's words.
  function whatHappened(a, reset) {
    const raised = (a.journal || []).find((e) => e.transition === "raised");
    const value = raised && raised.value !== null && raised.value !== undefined ? "，报警读数 " + raised.value : "";
    const threshold = typeof a.threshold === "number" ? "，阈值 " + a.threshold : "";
    return "火灾报警：传感器 " + a.sensor + "，规则 " + a.rule + threshold + value + "。" +
      (reset && reset.comment ? "复位说明：" + reset.comment : "");
  }

  async function load(param) {
    const token = {};
    loading = token;
    try {
      if (!param) {
        shown = { kind: "list" };
      } else if (param.startsWith("new/")) {
        const alarmId = Number(param.slice(4));
        const a = await api("/api/v1/alarms/" + alarmId);
        // The alarm has its report already (the server opens the draft on the reset): that one.
        const q = "?school=" + encodeURIComponent(a.school) + "&alarm_id=" + alarmId;
        const existing = ((await api("/api/v1/incidents" + q)).incidents || [])[0];
        if (existing) {
          if (loading === token) location.replace("#/incidents/" + encodeURIComponent(existing.id));
          return;
        }
        const reset = (a.journal || []).filter((e) => e.transition === "reset").pop();
        const d = state.devices.get(a.school + "/" + a.device) || {};
        const place = [d.building, d.room].filter(Boolean).join(" ");
        shown = { kind: "new", alarmId, prefill: {
          occurred_at: a.raised_at, building: d.building, room: d.room, location: place || a.device,
          what_happened: whatHappened(a, reset),
          deaths: 0, injuries: 0,
        }, alarm: a };
      } else {
        shown = { kind: "report", incident: await api("/api/v1/incidents/" + encodeURIComponent(param)) };
      }
    } catch (e) {
      if (loading !== token) return;
      shown = { kind: "error", message: e.status === 404 ? t("inc_not_found") : e.message };
    }
    if (loading !== token) return;
    render();
  }

  function render() {
    const root = section();
    if (!shown) { root.replaceChildren(h("p", { class: "empty" }, "…")); return; }
    const back = h("p", { class: "back" }, h("a", { href: "#/incidents" }, "← " + t("inc_back")));
    if (shown.kind === "error") { root.replaceChildren(back, h("p", { class: "empty", id: "incident-error-page" }, shown.message)); return; }
    if (shown.kind === "list") {
      const box = h("div", { id: "incidents-list" });
      root.replaceChildren(box);
      listInto(box);
      return;
    }
    if (shown.kind === "new") {
      const a = shown.alarm;
      root.replaceChildren(back, h("h2", { id: "incident-title" }, t("inc_new"), " · ", a.school, " ", a.device + "/" + a.point, " ",
        h("a", { href: "#/alarms/" + a.id }, "#" + a.id)),
        form(shown.prefill, shown.alarmId));
      return;
    }
    const i = shown.incident;
    const editable = i.status === "draft" && mayWrite();
    root.replaceChildren(back,
      h("h2", { id: "incident-title" }, t("view_incidents"), " ", i.id),
      h("div", { id: "incident-status", class: "alarm-state", dataset: { status: i.status } }, t("inc_status_" + i.status),
        !mayWrite() ? " · " + t("inc_read_only") : null),
      facts(i),
      editable ? form(i, null) : (i.status === "submitted" ? h("p", { class: "hint" }, t("inc_frozen")) : null));
  }

  window.CG.incidents = { listInto };
  window.CG.view("incidents", {
    roles: { operator: 4, lab_manager: 4, school_safety: 3, bureau: 2, admin: 6 },
    route: /^incidents\/(new\/\d+|[A-Za-z0-9_-]+)$/,
    show() {
      const param = state.params && state.params[0];
      shown = null; render();
      load(param || null);
    },
  });
})();
