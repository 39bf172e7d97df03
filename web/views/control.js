// campusguard console, the control-room view: the live alarm board (highest priority first,
// first-out marked, shelved alarms apart), the per-school summary, the alarm actions
// (acknowledge, shelve, reset), drill mode per school and building, and the ISA-18.2 health
// strip from /api/v1/alarms/kpis. Texts in web/i18n/control.js.
(function () {
  "use strict";
  const { I, t, state, h, api, post, fmtValue, place, isShelved, unackedAlarms, canHandleAlarms, openDialog, field } = window.CG;
  const { CLASS_ORDER, SEVERITY_ORDER } = window.CG;
  const drills = new Map(); // id → active drill

  // ---- the board -----------------------------------------------------------------------
  function sortAlarms(list) {
    return list.sort((a, b) => (CLASS_ORDER[a.class] - CLASS_ORDER[b.class])
      || ((SEVERITY_ORDER[a.severity] ?? 2) - (SEVERITY_ORDER[b.severity] ?? 2))
      || (b.raised_at - a.raised_at));
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
    // data-label: the column's name, shown in front of the value when a row is a card (phone).
    const cell = (label, attrs, ...content) => h("td", Object.assign({ dataset: { label: t(label) } }, attrs), ...content);
    return h("tr", { class: ["alarm", a.class, unacked ? "unacked" : "acked", a.drill ? "drill" : ""].join(" ").trim(),
      dataset: { id: a.id, state: a.state, class: a.class, sensor: a.sensor, rule: a.rule, drill: String(!!a.drill) } },
      h("td", { class: "what" }, h("span", { class: "badge " + a.class }, t("class_" + a.class)), " ",
        a.id === firstId ? h("span", { class: "badge first" }, t("first_alarm")) : null,
        a.drill ? h("span", { class: "badge drill" }, t("drill")) : null,
        // Raised while nobody was signed on in a duty room covering the school (the API says).
        a.unattended ? h("span", { class: "badge unattended" }, t("unattended")) : null),
      cell("col_school", {}, a.school),
      cell("col_place", {}, place(a.school, a.device)),
      cell("col_sensor", { class: "mono" }, a.device + "/" + a.point),
      cell("col_message", { class: "message" }, a.message),
      cell("col_value", {}, fmtValue(a.value, a.point)),
      cell("col_time", {}, I.fmtTime(a.raised_at)),
      cell("col_state", { class: "state" }, t("state_" + a.state), latched ? h("div", {}, h("span", { class: "badge latched" }, t("latched"))) : null,
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

  // ---- alarm actions -------------------------------------------------------------------
  // `after(event)`: called once the action went through (the alarm's page reloads itself).
  function alarmAction(a, action, after) {
    const path = "/api/v1/alarms/" + a.id + "/" + action;
    const done = (ev) => { window.CG.alarmChanged(ev); if (after) after(ev); };
    if (action === "ack") {
      openDialog(t("dialog_ack") + " #" + a.id, [field("comment", t("comment"), "textarea", { maxlength: 1000 })],
        async (d) => done(await post(path, d.comment ? { comment: d.comment } : {})));
    } else if (action === "shelve") {
      openDialog(t("dialog_shelve") + " #" + a.id, [
        field("duration", t("duration"), "select", { options: [["30m", "30 min"], ["1h", "1 h"], ["4h", "4 h"], ["8h", "8 h"], ["24h", "24 h"]] }),
        field("reason", t("reason"), "textarea", { required: true, maxlength: 1000 })],
        async (d) => done(await post(path, { duration: d.duration, reason: d.reason })));
    } else if (a.class === "fire") {
      // A fire alarm says what it was: a real fire opens its incident report (the form comes
      // next), a false alarm files the detector's maintenance ticket, a test files nothing.
      const choices = h("fieldset", { class: "disposition", id: "reset-disposition" }, h("legend", {}, t("reset_what")),
        ["real", "false", "test"].map((d) => h("label", { class: "choice" },
          h("input", { type: "radio", name: "disposition", value: d, required: true, id: "disposition-" + d }), " ", t("disp_" + d))));
      openDialog(t("dialog_reset") + " #" + a.id, [choices, field("comment", t("comment"), "textarea", { maxlength: 1000 })],
        async (d) => {
          done(await post(path, { comment: d.comment || null, disposition: d.disposition }));
          if (d.disposition === "real") location.hash = "#/incidents/new/" + a.id;
        });
    } else {
      openDialog(t("dialog_reset") + " #" + a.id, [field("comment", t("comment"), "textarea", { maxlength: 1000 }),
        h("label", {}, h("input", { type: "checkbox", name: "false_alarm", value: "true" }), " ", t("false_alarm"))],
        async (d) => done(await post(path, { comment: d.comment || null, false_alarm: d.false_alarm === "true" })));
    }
  }

  // ---- drill mode: a switch per school and per building, with its expiry -----------------
  async function loadDrills() {
    let list;
    try { list = await api("/api/v1/drills"); } catch (e) { return; }
    drills.clear();
    for (const d of list) drills.set(d.id, d);
    if (state.view === "control") renderDrills();
  }
  // The drills API lets operators and admins start and end drills (lab managers only see them).
  function canLeadDrills() { return ["operator", "admin"].includes(state.me.role); }
  function drillFor(school, building) {
    return [...drills.values()].find((d) => d.school === school && (d.building || "") === building);
  }
  function renderDrills() {
    const box = document.getElementById("drills");
    const scopes = new Map(); // school → Set of buildings
    for (const d of state.devices.values()) {
      const set = scopes.get(d.school) || new Set();
      if (d.building) set.add(d.building);
      scopes.set(d.school, set);
    }
    for (const d of drills.values()) {
      const set = scopes.get(d.school) || new Set();
      if (d.building) set.add(d.building);
      scopes.set(d.school, set);
    }
    if (!scopes.size) { box.replaceChildren(h("p", { class: "empty" }, t("no_drill_scopes"))); return; }
    const scopeRow = (school, building) => {
      const d = drillFor(school, building);
      const actions = [];
      if (canLeadDrills()) {
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
        drills.set(d.id, d); renderDrills();
      });
  }
  async function endDrill(d) {
    try { await api("/api/v1/drills/" + d.id, { method: "DELETE" }); }
    catch (e) { if (e.status !== 404) { alert(t("action_failed") + ": " + e.message); return; } }
    drills.delete(d.id); renderDrills();
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

  window.CG.onStream("drill", (d) => {
    if (d.change === "started") drills.set(d.id, d); else drills.delete(d.id);
    if (state.view === "control") renderDrills();
  });
  // Other views (an alarm's own page, for one) act on alarms the same way.
  window.CG.alarmAction = alarmAction;
  window.CG.view("control", {
    roles: { operator: 1, admin: 1, lab_manager: 2, school_safety: 2, bureau: 2 },
    async init() {
      await loadDrills();
      setInterval(loadKpis, 30000);
    },
    show() { renderBoard(); loadKpis(); },
    alarms: renderBoard,
    reload: loadDrills,
  });
})();
