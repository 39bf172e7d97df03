// campusguard console, what the ticket views share (bureau, school safety): the ticket table,
// a ticket's detail dialog with its history, and workflow actions through the action dialog.
// Loaded after app.js and before the views; exposes window.CG.tickets. Texts in
// web/i18n/tickets.js.
(function () {
  "use strict";
  const { I, t, h, api, post, openDialog } = window.CG;
  const TICKET_STATES = ["registered", "rectifying", "deferred", "reported", "closed"];
  const CATEGORIES = ["fire", "security", "lab_chemical", "food_water", "building", "traffic", "other"];
  const GRADES = ["general", "major"];

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
        h("td", {}, tk.school_name || tk.school || ""), h("td", {}, tk.location || ""),
        h("td", {}, tk.category ? t("c_" + tk.category) : ""), h("td", {}, tk.grade ? t("g_" + tk.grade) : ""),
        h("td", {}, tk.state ? t("ts_" + tk.state) : "", isOverdue(tk) ? h("div", {}, h("span", { class: "badge fire" }, t("overdue"))) : null),
        h("td", {}, deadlineOf(tk) ? I.fmtTime(deadlineOf(tk)) : ""),
        h("td", {}, tk.supervised ? h("span", { class: "badge supervisory" }, t("t_supervised")) : ""),
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
      const rows = [["t_number", detail.number || detail.id], ["t_school", detail.school_name || detail.school], ["t_location", detail.location],
        ["t_device", detail.device],
        ["t_description", detail.description], ["t_category", detail.category && t("c_" + detail.category)],
        ["t_grade", detail.grade && t("g_" + detail.grade)], ["t_state", detail.state && t("ts_" + detail.state)],
        ["t_unit", detail.responsible_unit], ["t_person", detail.responsible_person], ["t_measures", detail.measures],
        ["t_funding", detail.funding], ["t_deadline", deadlineOf(detail) && I.fmtTime(deadlineOf(detail))],
        ["t_contingency", detail.contingency_plan], ["f_plan", detail.deferral_plan], ["f_interim", detail.interim_measures],
        ["f_done", detail.rectification], ["reason", detail.reject_reason],
        ["t_found", detail.found_at && I.fmtTime(detail.found_at)]];
      const items = Array.isArray(history) ? history : (history.items || history.history || []);
      const marks = [isOverdue(detail) ? h("span", { class: "badge fire mark-overdue" }, t("overdue")) : null,
        detail.supervised ? h("span", { class: "badge supervisory mark-supervised" }, t("t_supervised")) : null];
      const photos = (detail.attachments || []).filter((a) => a.content_type && a.content_type.startsWith("image/"));
      box.replaceChildren(h("h3", {}, detail.number || id, " ", marks),
        h("table", {}, rows.filter(([, v]) => v).map(([k, v]) => h("tr", {}, h("th", {}, t(k)), h("td", {}, v)))),
        photos.length ? h("div", { class: "thumbs" }, photos.map((a) => h("figure", {},
          h("img", { src: "/api/v1/tickets/" + id + "/attachments/" + a.sha256, alt: t("photo_" + a.kind), loading: "lazy" }),
          h("figcaption", {}, t("photo_" + a.kind))))) : null,
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
  // Uploads a photo as evidence of `kind` (before, after); resolves to the attachment.
  async function uploadPhoto(id, kind, file) {
    const form = new FormData();
    form.append("kind", kind);
    form.append("file", file);
    return api("/api/v1/tickets/" + encodeURIComponent(id) + "/attachments", { method: "POST", body: form });
  }
  function ticketAction(tk, action, fields, reload) {
    openDialog(t("a_" + action) + " " + (tk.number || ticketId(tk)), fields, async (d) => {
      let version = tk.version;
      // Photos go first: a report needs its "after" photo on the ticket; each upload is a
      // version of its own.
      for (const [name, value] of Object.entries(d)) {
        if (!(value instanceof File)) continue;
        delete d[name];
        if (!value.size) continue;
        await uploadPhoto(ticketId(tk), name, value);
        version += 1;
      }
      await post("/api/v1/tickets/" + encodeURIComponent(ticketId(tk)) + "/actions/" + action, actionBody({ ...tk, version }, d));
      reload();
    });
  }
  function ticketList(body) { return Array.isArray(body) ? body : (body.items || body.tickets || []); }

  document.getElementById("ticket-close").addEventListener("click", () => document.getElementById("ticket-dialog").close());
  window.CG.tickets = {
    TICKET_STATES, CATEGORIES, GRADES,
    ticketsDisabled, ticketId, isOverdue, ticketTable, showTicket, ticketAction, ticketList, uploadPhoto,
  };
})();
