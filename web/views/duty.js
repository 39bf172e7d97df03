// campusguard console, the duty log (#/duty, 值班记录): per control room, who is on duty now
// and the last handover notes; operators and admins sign on (with the name the record prints)
// and hand over with notes for the next shift; the log of a day (date picker) lists the shifts
// and, from the alarm journal, the alarms raised, acknowledged and reset, faults, write-back
// actions and drills, with who was on duty at the time and an 无人值守 badge on alarms raised
// while nobody was. CSV/XLSX downloads, and a printable A4 daily record (web/duty.css: the
// print stylesheet hides the console and adds a header and signature lines). Texts in
// web/i18n/duty.js.
(function () {
  "use strict";
  const { I, t, h, api, post, state } = window.CG;
  let rooms = [];      // GET /api/v1/duty/shifts → rooms the user may see, with who is on now
  let room = null;     // selected room name
  let date = "";       // selected day (YYYY-MM-DD); "" = the gateway's today
  let log = null;      // the day's log of the selected room

  function section() { return document.getElementById("view-duty"); }
  function canSign() { return ["operator", "admin"].includes(state.me.role); }
  function current() { return rooms.find((r) => r.name === room) || null; }
  function showError(e) {
    const err = document.getElementById("duty-error");
    if (err) { err.textContent = t("action_failed") + ": " + e.message; err.hidden = false; }
  }

  async function loadRooms() {
    const answer = await api("/api/v1/duty/shifts");
    rooms = answer.rooms || [];
    if (!rooms.some((r) => r.name === room)) room = rooms.length ? rooms[0].name : null;
  }
  async function loadLog() {
    if (!room) { log = null; return; }
    const p = new URLSearchParams({ room });
    if (date) p.set("date", date);
    log = await api("/api/v1/duty/log?" + p.toString());
    date = log.date;
  }
  async function load() {
    try { await loadRooms(); await loadLog(); render(); }
    catch (e) { render(); showError(e); }
  }

  // ---- now on duty: sign on / hand over ---------------------------------------------------
  function renderNow() {
    const r = current();
    if (!r) return h("p", { class: "empty", id: "duty-no-rooms" }, t("duty_no_rooms"));
    const mine = r.on_duty.find((s) => s.user === state.me.name);
    const staffing = h("span", { class: "badge staffing " + r.staffing, id: "duty-staffing", dataset: { staffing: r.staffing } },
      t("duty_staffing_" + r.staffing) + " " + r.on_duty.length + "/" + r.staff_per_shift);
    const people = r.on_duty.length
      ? h("ul", { id: "duty-on" }, r.on_duty.map((s) => h("li", { dataset: { shift: s.id, user: s.user } },
        h("b", {}, s.display_name), " ", h("span", { class: "muted" }, "(" + s.user + ") " + t("duty_since") + " " + I.fmtTime(s.on_at)))))
      : h("p", { class: "empty", id: "duty-nobody" }, t("duty_nobody"));
    const last = r.last_handover;
    const notes = h("div", { class: "handover-notes" }, h("b", {}, t("duty_last_notes")), " ",
      last ? [h("span", { class: "muted" }, last.display_name + " · " + I.fmtTime(last.off_at)), h("p", { id: "duty-last-notes" }, last.notes || t("duty_no_notes"))]
        : h("span", { class: "muted", id: "duty-last-notes" }, t("duty_no_handover")));
    let form = null;
    if (canSign() && mine) {
      form = h("form", { id: "duty-handover-form", class: "duty-form", onsubmit: async (ev) => {
        ev.preventDefault();
        const text = document.getElementById("duty-notes").value;
        try { await post("/api/v1/duty/shifts/" + mine.id + "/handover", { notes: text }); await load(); }
        catch (e) { showError(e); }
      } },
      h("label", {}, h("span", {}, t("duty_notes")), h("textarea", { id: "duty-notes", maxlength: 4000, rows: 3 })),
      h("button", { type: "submit", id: "duty-handover" }, t("duty_handover")));
    } else if (canSign()) {
      form = h("form", { id: "duty-sign-on-form", class: "duty-form", onsubmit: async (ev) => {
        ev.preventDefault();
        const name = document.getElementById("duty-display").value.trim();
        try { await post("/api/v1/duty/shifts", name ? { room, display_name: name } : { room }); await load(); }
        catch (e) { showError(e); }
      } },
      h("label", {}, h("span", {}, t("duty_display_name")), " ",
        h("input", { id: "duty-display", maxlength: 64, size: 12, value: localStorage.getItem("cg_duty_name") || "",
          onchange: (ev) => localStorage.setItem("cg_duty_name", ev.target.value) })),
      h("button", { type: "submit", id: "duty-sign-on" }, t("duty_sign_on")));
    }
    return h("div", { class: "duty-now no-print", id: "duty-now" },
      h("h3", {}, t("duty_now"), " ", staffing), people, notes, form);
  }

  // ---- the day's log ---------------------------------------------------------------------
  function names(ids) {
    return (log.shifts || []).filter((s) => ids.includes(s.id)).map((s) => s.display_name).join("、");
  }
  function renderShifts() {
    return h("table", { class: "board duty-shifts", id: "duty-shifts" },
      h("thead", {}, h("tr", {}, ["duty_col_staff", "duty_col_on", "duty_col_off", "duty_col_notes"].map((c) => h("th", {}, t(c))))),
      h("tbody", {}, (log.shifts || []).map((s) => h("tr", { dataset: { shift: s.id } },
        h("td", {}, h("b", {}, s.display_name), " ", h("span", { class: "muted" }, s.user)),
        h("td", {}, I.fmtTime(s.on_at)),
        h("td", {}, s.off_at ? I.fmtTime(s.off_at) : t("duty_still_on")),
        h("td", { class: "notes" }, s.notes || "")))));
  }
  function renderEvents() {
    const rows = [];
    for (const e of log.events || []) {
      rows.push({ at: e.at, row: h("tr", { class: "duty-event " + e.class, dataset: { alarm: e.alarm_id, transition: e.transition, unattended: String(!!e.unattended) } },
        h("td", {}, I.fmtTime(e.at)),
        h("td", {}, t("duty_tr_" + e.transition),
          e.disposition ? h("span", { class: "badge disposition " + e.disposition, dataset: { disposition: e.disposition } }, t("disp_badge_" + e.disposition)) : null),
        h("td", {}, h("span", { class: "badge " + e.class }, t("class_" + e.class)), " ",
          e.unattended ? h("span", { class: "badge unattended" }, t("unattended")) : null,
          e.drill ? h("span", { class: "badge drill" }, t("duty_drill")) : null),
        h("td", {}, h("a", { href: "#/alarms/" + e.alarm_id }, "#" + e.alarm_id), " ", e.school),
        h("td", {}, [e.building, e.sensor].filter(Boolean).join(" · "), h("div", {}, e.message)),
        h("td", {}, e.user === "system" ? "" : e.user, e.comment ? h("div", { class: "muted" }, e.comment) : null),
        h("td", {}, names(e.shift_ids || []) || (e.unattended ? t("unattended") : ""))) });
    }
    for (const d of log.drills || []) {
      rows.push({ at: d.started_at, row: h("tr", { class: "duty-drill", dataset: { drill: d.id } },
        h("td", {}, I.fmtTime(d.started_at)), h("td", {}, t("duty_tr_drill")),
        h("td", {}, h("span", { class: "badge drill" }, t("duty_drill"))),
        h("td", {}, d.school), h("td", {}, d.building || "", h("div", {}, d.reason)),
        h("td", {}, d.started_by), h("td", {}, d.ended_at ? t("duty_drill_ended") + " " + I.fmtTime(d.ended_at) : "")) });
    }
    rows.sort((a, b) => a.at - b.at);
    return [
      h("table", { class: "board duty-events", id: "duty-events" },
        h("thead", {}, h("tr", {}, ["duty_col_time", "duty_col_what", "duty_col_class", "duty_col_alarm", "duty_col_where", "duty_col_by", "duty_col_on_duty"].map((c) => h("th", {}, t(c))))),
        h("tbody", {}, rows.map((r) => r.row))),
      rows.length ? null : h("p", { class: "empty", id: "duty-events-empty" }, t("duty_no_events")),
      log.truncated ? h("p", { class: "error" }, t("duty_truncated")) : null,
    ];
  }
  // Signature lines for everyone on duty that day (and one spare), for the printed record.
  function renderSignatures() {
    const people = [...new Set((log.shifts || []).map((s) => s.display_name))];
    people.push("");
    return h("div", { class: "print-only signatures", id: "duty-signatures" },
      h("p", {}, t("duty_sign_hint")),
      people.map((p) => h("div", { class: "signature" }, h("span", {}, t("duty_signature") + (p ? "（" + p + "）" : "") + "："),
        h("span", { class: "line" }), h("span", {}, t("duty_sign_date") + "："), h("span", { class: "line short" }))),
      h("div", { class: "signature" }, h("span", {}, t("duty_checked_by") + "："), h("span", { class: "line" }),
        h("span", {}, t("duty_sign_date") + "："), h("span", { class: "line short" })));
  }

  function renderControls() {
    const exportTo = (format) => {
      const p = new URLSearchParams({ room, format });
      if (date) p.set("date", date);
      if (I.lang === "en") p.set("lang", "en");
      window.location.href = "/api/v1/duty/log?" + p.toString();
    };
    return h("form", { id: "duty-filters", class: "filters no-print", onsubmit: (ev) => {
      ev.preventDefault();
      room = document.getElementById("duty-room").value;
      date = document.getElementById("duty-date").value;
      load();
    } },
    h("label", {}, h("span", {}, t("duty_room")), " ", h("select", { id: "duty-room", name: "room" },
      rooms.map((r) => h("option", { value: r.name, selected: r.name === room }, r.name)))),
    h("label", {}, h("span", {}, t("duty_date")), " ", h("input", { type: "date", id: "duty-date", name: "date", value: date })),
    h("button", { type: "submit", id: "duty-search" }, t("search")),
    h("span", { class: "spacer" }),
    h("button", { type: "button", id: "duty-print", onclick: () => window.print() }, t("duty_print")),
    h("button", { type: "button", class: "export", id: "duty-export-csv", onclick: () => exportTo("csv") }, t("duty_export_csv")),
    h("button", { type: "button", class: "export", id: "duty-export-xlsx", onclick: () => exportTo("xlsx") }, t("duty_export_xlsx")));
  }

  function render() {
    const el = section();
    if (!el) return;
    const r = current();
    const parts = [h("h2", { class: "no-print" }, t("view_duty")), h("p", { class: "error", id: "duty-error", hidden: true })];
    if (!r) { el.replaceChildren(...parts, h("p", { class: "empty", id: "duty-no-rooms" }, t("duty_no_rooms"))); return; }
    parts.push(renderControls(), renderNow());
    if (log) {
      parts.push(
        // The printed record's header: what, where, which day.
        h("header", { class: "print-header", id: "duty-print-header" },
          h("h1", {}, t("duty_record_title")),
          h("div", {}, t("duty_room") + "：", h("b", {}, log.room), "　", t("school") + "：", h("b", {}, (log.school_names || log.schools || []).join("、")),
            "　", t("duty_date") + "：", h("b", { id: "duty-log-date" }, log.date),
            "　", t("duty_planned") + "：", String(log.staff_per_shift))),
        h("h3", {}, t("duty_shifts")), renderShifts(),
        h("h3", {}, t("duty_events")), ...renderEvents(),
        renderSignatures());
    }
    el.replaceChildren(...parts.filter(Boolean));
  }

  window.CG.view("duty", {
    // A page of its own, linked from the control view (not a tab).
    route: /^duty$/,
    show() { render(); load(); },
    // The stream reconnected: reload. (New alarms do not re-render the page on their own, so
    // handover notes being typed are never wiped; 查询 reloads.)
    reload() { if (state.view === "duty") load(); },
  });
})();
