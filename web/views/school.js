// campusguard console, the school-safety view, usable on a phone: register a hazard found on
// an inspection (with "before" photos from the camera), 立查立改 with an "after" photo, assign
// with the five in place (deadline prefilled from the grade), defer, report with an "after"
// photo, verify or reject what someone else reported, and submit the school's month (the
// reporting calendar). Texts in web/i18n/school.js and web/i18n/tickets.js.
(function () {
  "use strict";
  const { t, h, api, post, field, openDialog, state } = window.CG;
  const { CATEGORIES, GRADES, ticketsDisabled, ticketTable, ticketAction, ticketList, ticketId, uploadPhoto } = window.CG.tickets;
  const DAY = 86400000;

  function mySchool() {
    const schools = state.me && state.me.schools;
    return Array.isArray(schools) && schools.length ? schools[0] : null;
  }
  function thisMonth() {
    const now = new Date();
    return now.getFullYear() + "-" + String(now.getMonth() + 1).padStart(2, "0");
  }
  // YYYY-MM-DD of a time, local: the value of a date input.
  function day(ms) {
    const d = new Date(ms);
    return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0");
  }
  const photo = (name, label) => field(name, label, "file", { accept: "image/*", capture: "environment" });
  const deadline = (value) => field("deadline", t("f_deadline"), "date", { required: true, value: value || "" });

  function registerForm() {
    const school = mySchool();
    openDialog(t("register_hazard"), [
      field("category", t("t_category"), "select", { options: CATEGORIES.map((c) => [c, t("c_" + c)]) }),
      field("grade", t("t_grade"), "select", { options: GRADES.map((g) => [g, t("g_" + g)]) }),
      field("building", t("t_building"), "text", { required: true }),
      field("room", t("t_room"), "text"),
      field("description", t("t_description"), "textarea", { required: true }),
      photo("before", t("f_before_photo")),
    ], async (d) => {
      const created = await post("/api/v1/tickets", {
        school, category: d.category, grade: d.grade, building: d.building, room: d.room, description: d.description,
      });
      if (d.before && d.before.size) await uploadPhoto(ticketId(created), "before", d.before);
      loadSchool();
    });
  }
  // The deadline a new assignment gets by default: general 7 days, major 30 (the config's
  // defaults; the server keeps its own if none is sent).
  function defaultDeadline(tk) { return tk.deadline_at || Date.now() + (tk.grade === "major" ? 30 : 7) * DAY; }

  async function loadSchool() {
    const box = document.getElementById("school-tickets");
    const bar = document.getElementById("school-bar");
    bar.replaceChildren(h("button", { id: "register-hazard", class: "primary", onclick: registerForm }, t("register_hazard")));
    loadCalendar();
    // The school's incident reports (信息报告), below its tickets.
    if (window.CG.incidents) window.CG.incidents.listInto(document.getElementById("school-incidents"));
    let list;
    try { list = ticketList(await api("/api/v1/tickets")); }
    catch (e) {
      if (e.status === 404) { ticketsDisabled(box); return; }
      box.replaceChildren(h("p", { class: "error" }, e.message)); return;
    }
    list = list.filter((tk) => tk.state !== "closed");
    const reload = () => loadSchool();
    const assign = (tk) => () => [field("responsible_unit", t("t_unit"), "text", { required: true, value: tk.responsible_unit || "" }),
      field("responsible_person", t("t_person"), "text", { required: true, value: tk.responsible_person || "" }),
      field("measures", t("t_measures"), "textarea", { required: true }),
      field("funding", t("t_funding"), "text", { value: tk.funding || "" }),
      field("contingency_plan", t("t_contingency"), "textarea"),
      deadline(day(defaultDeadline(tk)))];
    const defer = (tk) => () => [field("plan", t("f_plan"), "textarea", { required: true }), field("interim_measures", t("f_interim"), "textarea", { required: true }),
      field("contingency_plan", t("t_contingency"), "textarea"), deadline(day(Date.now() + 30 * DAY))];
    const fixed = () => [field("done", t("f_done"), "textarea", { required: true }), photo("after", t("f_after_photo"))];
    const forms = {
      registered: (tk) => [["fix_now", fixed], ["assign", assign(tk)], ["defer", defer(tk)]],
      rectifying: (tk) => [["report", fixed], ["defer", defer(tk)]],
      deferred: (tk) => [["assign", assign(tk)]],
      reported: () => [["verify", () => [field("comment", t("comment"), "textarea")]],
        ["reject", () => [field("reason", t("reason"), "textarea", { required: true })]]],
    };
    box.replaceChildren(ticketTable(list, (tk) => (forms[tk.state] ? forms[tk.state](tk) : []).map(([action, make]) =>
      h("button", { class: "action-" + action, onclick: () => ticketAction(tk, action, make(), reload) }, t("a_" + action)))));
  }

  // This month's report of the school: submitted (when, how many rows) or a submit button.
  async function loadCalendar() {
    const box = document.getElementById("school-report");
    const school = mySchool();
    if (!school) { box.replaceChildren(); return; }
    const month = thisMonth();
    let cal;
    try { cal = await api("/api/v1/reports?month=" + month); } catch (e) { box.replaceChildren(h("p", { class: "error" }, e.message)); return; }
    const mine = (cal.schools || []).find((s) => s.school === school);
    const status = mine ? mine.status : "missing";
    const due = window.CG.I.fmtTime(cal.school_due_at);
    const line = h("p", { class: "report-status", dataset: { status } }, t("report_month") + " " + month + "：", h("strong", {}, t("rs_" + status)),
      " · " + t("report_due") + " " + due,
      mine && mine.snapshot ? " · " + t("report_rows") + " " + mine.snapshot.row_count : null);
    const submit = status === "missing" ? h("button", { id: "submit-month", onclick: async () => {
      if (!confirm(t("report_confirm"))) return;
      try { await post("/api/v1/reports/" + encodeURIComponent(school) + "/" + month + "/submit", {}); }
      catch (e) { alert(t("action_failed") + ": " + e.message); }
      loadCalendar();
    } }, t("report_submit")) : null;
    box.replaceChildren(line, submit);
  }

  window.CG.view("school", {
    roles: { school_safety: 1, admin: 4 },
    show: loadSchool,
  });
})();
