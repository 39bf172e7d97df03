// campusguard console, the school-safety view: the school's open tickets with the workflow
// actions their state allows (assign, report, defer, verify, reject). Texts in
// web/i18n/school.js and web/i18n/tickets.js.
(function () {
  "use strict";
  const { t, h, api, field } = window.CG;
  const { ticketsDisabled, ticketTable, ticketAction, ticketList } = window.CG.tickets;

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

  window.CG.view("school", {
    roles: { school_safety: 1, admin: 4 },
    show: loadSchool,
  });
})();
