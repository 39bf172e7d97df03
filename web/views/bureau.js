// campusguard console, the bureau view: every school's tickets with filters, supervision
// (挂牌督办) of open tickets, the monthly ledger export, per-school counts and every school's
// incident reports (web/views/incident.js). Texts in
// web/i18n/bureau.js and web/i18n/tickets.js.
(function () {
  "use strict";
  const { t, state, h, svg, api, post, field } = window.CG;
  const { TICKET_STATES, CATEGORIES, GRADES, ticketsDisabled, ticketId, ticketTable, ticketList, ticketAction } = window.CG.tickets;

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
    const reload = () => loadBureau();
    box.replaceChildren(ticketTable(list, (tk) => {
      const buttons = [];
      if (tk.state === "reported") {
        buttons.push(h("button", { class: "action-verify", onclick: () => ticketAction(tk, "verify", [field("comment", t("comment"), "textarea")], reload) }, t("a_verify")),
          h("button", { class: "action-reject", onclick: () => ticketAction(tk, "reject", [field("reason", t("reason"), "textarea", { required: true })], reload) }, t("a_reject")));
      }
      if (canSupervise && tk.state !== "closed") {
        buttons.push(h("button", { class: tk.supervised ? "unsupervise" : "supervise",
          onclick: async () => { try { await post("/api/v1/tickets/" + encodeURIComponent(ticketId(tk)) + "/actions/" + (tk.supervised ? "unsupervise" : "supervise"), { version: tk.version }); } catch (e) { alert(t("action_failed") + ": " + e.message); } loadBureau(); } },
          tk.supervised ? t("unsupervise") : t("supervise")));
      }
      return buttons;
    }));
    // Every school's incident reports (信息报告), below the tickets.
    if (window.CG.incidents) window.CG.incidents.listInto(document.getElementById("bureau-incidents"));
    try { await loadDistrict(stats, form.elements.month.value); }
    catch (e) { stats.replaceChildren(h("p", { class: "error" }, e.message)); }
  }

  // The district page, counted by the server: per school this month, by category and grade,
  // a 12-month trend, the reporting calendar of the chosen month and drill compliance.
  async function loadDistrict(box, month) {
    const now = new Date();
    const last = now.getFullYear() + "-" + String(now.getMonth() + 1).padStart(2, "0");
    const first = new Date(now.getFullYear(), now.getMonth() - 11, 1);
    const from = first.getFullYear() + "-" + String(first.getMonth() + 1).padStart(2, "0");
    const [bySchool, byCategory, byGrade, byMonth, calendar, drills] = await Promise.all([
      api("/api/v1/stats/tickets?by=school&from=" + last),
      api("/api/v1/stats/tickets?by=category&from=" + last),
      api("/api/v1/stats/tickets?by=grade&from=" + last),
      api("/api/v1/stats/tickets?by=month&from=" + from + "&to=" + last),
      api("/api/v1/reports?month=" + encodeURIComponent(month || last)),
      api("/api/v1/drills/history?from=" + from + "&to=" + last).catch(() => ({ compliance: [] })),
    ]);
    const num = (v) => h("td", { class: "num" }, String(v ?? 0));
    const groupTable = (id, stats, cols) => h("table", { id }, h("tr", {}, [t("group")].concat(cols.map((c) => t("st_" + c))).map((x) => h("th", {}, x))),
      stats.groups.map((g) => h("tr", { dataset: { key: g.key } }, h("td", {}, g.label), cols.map((c) => num(g[c])))));
    box.replaceChildren(h("div", { class: "district" },
      h("h3", {}, t("district_this_month")),
      groupTable("district-schools", bySchool, ["open", "overdue", "supervised", "closed"]),
      h("h3", {}, t("by_category")), groupTable("district-categories", byCategory, ["found", "open", "overdue"]),
      h("h3", {}, t("by_grade")), groupTable("district-grades", byGrade, ["found", "open", "overdue"]),
      h("h3", {}, t("trend_12")), trend(byMonth.groups),
      h("h3", {}, t("calendar") + " " + calendar.month),
      h("table", { id: "district-calendar" }, h("tr", {}, ["school", "t_state", "report_rows"].map((k) => h("th", {}, t(k)))),
        calendar.schools.map((s) => h("tr", { dataset: { school: s.school, status: s.status } }, h("td", {}, s.name),
          h("td", { class: "status-" + s.status }, t("rs_" + s.status)), num(s.snapshot ? s.snapshot.row_count : "–")))),
      h("p", {}, h("a", { href: "/api/v1/reports/district/" + calendar.month + "?format=xlsx" }, t("district_file"))),
      h("h3", {}, t("drills_compliance")),
      h("table", { id: "district-drills" }, h("tr", {}, ["school", "drills_held", "drills_required"].map((k) => h("th", {}, t(k)))),
        (drills.compliance || []).map((c) => h("tr", { class: c.compliant ? null : "overdue" }, h("td", {}, c.name), num(c.held), num(c.required))))));
  }

  // An inline SVG bar chart of found and closed tickets per month (no chart library, no CDN).
  function trend(groups) {
    const width = 320, height = 120, pad = 16;
    const max = Math.max(1, ...groups.map((g) => Math.max(g.found, g.closed)));
    const step = (width - pad) / Math.max(1, groups.length);
    const chart = svg("svg", { class: "trend", id: "district-trend", viewBox: `0 0 ${width} ${height}`, role: "img" });
    groups.forEach((g, i) => {
      const x = pad + i * step;
      for (const [k, dx] of [["found", 0], ["closed", step * 0.4]]) {
        const bar = (height - 2 * pad) * g[k] / max;
        chart.append(svg("rect", { class: k, x: x + dx, y: height - pad - bar, width: step * 0.35, height: bar, "data-month": g.key, "data-value": g[k] }));
      }
      const label = svg("text", { x, y: height - 4 });
      label.textContent = g.key.slice(5);
      chart.append(label);
    });
    return chart;
  }

  window.CG.view("bureau", {
    roles: { bureau: 1, admin: 3 },
    show: loadBureau,
  });
})();
