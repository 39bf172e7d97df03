// campusguard console, the alarm history (#/history): every alarm the gateway keeps, filtered
// by time, school, building, class, state and text, newest first, 100 at a time ("more" follows
// next_cursor), and the same selection as a CSV or XLSX download with Chinese headers. A row
// opens the alarm's own page with its whole journal. Texts in web/i18n/history.js.
(function () {
  "use strict";
  const { I, t, h, api } = window.CG;
  const CLASSES = ["fire", "gas", "supervisory", "fault"];
  const STATES = ["active_unacked", "active_acked", "cleared_unacked", "cleared"];
  let rows = [];
  let next = null;
  let query = "";
  let busy = false;

  function section() { return document.getElementById("view-history"); }

  // The filter form as a query string (times from datetime-local inputs, in local time).
  function currentQuery(form) {
    const p = new URLSearchParams();
    const f = new FormData(form);
    for (const name of ["school", "building", "class", "state", "q"]) {
      const v = String(f.get(name) || "").trim();
      if (v) p.set(name, v);
    }
    for (const name of ["from", "to"]) {
      const v = String(f.get(name) || "");
      if (v) { const ms = new Date(v).getTime(); if (!isNaN(ms)) p.set(name, String(ms)); }
    }
    return p.toString();
  }

  async function load(more) {
    if (busy) return;
    busy = true;
    const p = new URLSearchParams(query);
    p.set("limit", "100");
    if (more && next) p.set("cursor", next);
    try {
      const page = await api("/api/v1/alarms/history?" + p.toString());
      rows = more ? rows.concat(page.alarms) : page.alarms;
      next = page.next_cursor;
      renderRows();
    } catch (e) {
      const err = document.getElementById("history-error");
      if (err) { err.textContent = t("action_failed") + ": " + e.message; err.hidden = false; }
    } finally { busy = false; }
  }

  function select(name, values, label) {
    return h("select", { name, id: "history-" + name },
      h("option", { value: "" }, t("all")), values.map((v) => h("option", { value: v }, label(v))));
  }

  function renderForm() {
    const form = h("form", {
      id: "history-filters", class: "filters",
      onsubmit: (ev) => { ev.preventDefault(); query = currentQuery(form); next = null; load(false); },
    },
      h("label", {}, h("span", {}, t("h_from")), " ", h("input", { type: "datetime-local", name: "from", id: "history-from" })),
      h("label", {}, h("span", {}, t("h_to")), " ", h("input", { type: "datetime-local", name: "to", id: "history-to" })),
      h("label", {}, h("span", {}, t("school")), " ", h("input", { name: "school", size: 8, id: "history-school" })),
      h("label", {}, h("span", {}, t("h_building")), " ", h("input", { name: "building", size: 8, id: "history-building" })),
      h("label", {}, h("span", {}, t("h_class")), " ", select("class", CLASSES, (c) => t("class_" + c))),
      h("label", {}, h("span", {}, t("h_state")), " ", select("state", STATES, (s) => t("state_" + s))),
      h("label", {}, h("span", {}, t("h_text")), " ", h("input", { name: "q", size: 10, id: "history-q" })),
      h("button", { type: "submit", id: "history-search" }, t("search")),
      h("span", { class: "spacer" }),
      ["csv", "xlsx"].map((format) => h("button", {
        type: "button", class: "export", id: "history-export-" + format,
        onclick: () => {
          const p = new URLSearchParams(currentQuery(form));
          p.set("format", format);
          if (I.lang === "en") p.set("lang", "en");
          window.location.href = "/api/v1/alarms/history?" + p.toString();
        },
      }, t("h_export_" + format))));
    return form;
  }

  function renderRows() {
    const body = document.getElementById("history-body");
    if (!body) return;
    body.replaceChildren(...rows.map((a) => h("tr", { class: "history-row", dataset: { id: a.id, class: a.class } },
      h("td", {}, h("a", { href: "#/alarms/" + a.id }, "#" + a.id)),
      h("td", {}, I.fmtTime(a.raised_at)),
      h("td", {}, h("span", { class: "badge " + a.class }, t("class_" + a.class))),
      h("td", {}, a.school),
      h("td", {}, [a.building, a.device].filter(Boolean).join(" · ")),
      h("td", {}, a.message),
      h("td", {}, t("state_" + a.state)),
      h("td", {}, a.acked_by ? a.acked_by + " · " + I.fmtTime(a.acked_at) : ""),
      h("td", {}, a.cleared_at ? I.fmtTime(a.cleared_at) : ""))));
    document.getElementById("history-empty").hidden = rows.length > 0;
    document.getElementById("history-more").hidden = !next;
    document.getElementById("history-count").textContent = String(rows.length) + (next ? "+" : "");
  }

  function render() {
    const cols = ["h_id", "h_raised", "h_class", "school", "h_place", "h_message", "h_state", "h_acked", "h_cleared"];
    section().replaceChildren(
      h("h2", {}, t("view_history"), " ", h("small", {}, "(", h("span", { id: "history-count" }, "0"), ")")),
      renderForm(),
      h("p", { class: "error", id: "history-error", hidden: true }),
      h("table", { class: "board history", id: "history-table" },
        h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, t(c))))),
        h("tbody", { id: "history-body" })),
      h("p", { class: "empty", id: "history-empty", hidden: true }, t("h_none")),
      h("p", {}, h("button", { type: "button", id: "history-more", hidden: true, onclick: () => load(true) }, t("h_more"))));
    renderRows();
  }

  window.CG.view("history", {
    // A page of its own, linked from the control view (not a tab).
    route: /^history$/,
    show() { render(); load(false); },
  });
})();
