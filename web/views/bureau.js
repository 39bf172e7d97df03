// campusguard console, the bureau view: every school's tickets with filters, supervision
// (挂牌督办) of open tickets, the monthly ledger export and per-school counts. Texts in
// web/i18n/bureau.js and web/i18n/tickets.js.
(function () {
  "use strict";
  const { t, state, h, api, post } = window.CG;
  const { TICKET_STATES, CATEGORIES, GRADES, ticketsDisabled, ticketId, isOverdue, ticketTable, ticketList } = window.CG.tickets;

  function ticketQuery(form) {
    const q = new URLSearchParams();
    for (const name of ["school", "state", "category", "grade"]) { const v = form.elements[name].value.trim(); if (v) q.set(name, v); }
    if (form.elements.overdue.checked) q.set("overdue", "true");
    if (form.elements.supervised.checked) q.set("supervised", "true");
    return q;
  }
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

  window.CG.view("bureau", {
    roles: { bureau: 1, admin: 3 },
    show: loadBureau,
  });
})();
