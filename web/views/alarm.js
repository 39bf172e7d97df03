// campusguard console, an alarm's own page (#/alarms/<id>): the link in every notification
// opens it, usually on a phone at night, so it reads well at 375 px. Facts of the alarm, the
// readings of its sensor around it, its journal (every transition and every notification
// attempt), and for those who handle alarms: acknowledge with a comment, reset a latched one
// (the board's dialog: a fire alarm says whether it was real, false or a test). Texts in
// web/i18n/alarm.js. Not a tab: reached by its link (a user not logged in logs in and comes
// back here).
(function () {
  "use strict";
  const { I, t, state, h, svg, api, post, fmtValue, place, canHandleAlarms } = window.CG;
  const AROUND_MS = 30 * 60 * 1000; // readings this long before and after the raise
  let shown = null; // { id, alarm, journal, points }
  let loading = null;

  function section() { return document.getElementById("view-alarm"); }

  async function load(id) {
    const token = {};
    loading = token;
    let body;
    try { body = await api("/api/v1/alarms/" + id); }
    catch (e) {
      if (loading !== token) return;
      shown = { id, error: e.status === 404 ? t("alarm_not_found") : e.message };
      render(); return;
    }
    const a = body;
    const to = Math.min(Date.now(), a.raised_at + AROUND_MS);
    let points = [];
    try {
      const path = ["/api/v1/sensors", a.school, a.device, a.point, "history"].map(encodeURIComponent).join("/").replace(/%2F/g, "/");
      const hist = await api(path + "?from=" + (a.raised_at - AROUND_MS) + "&to=" + to + "&limit=2000");
      points = hist.points || [];
    } catch (e) { points = []; }
    if (loading !== token) return;
    shown = { id, alarm: a, journal: a.journal || [], points };
    render();
  }

  function fact(label, value) {
    if (value === null || value === undefined || value === "") return null;
    return [h("dt", {}, label), h("dd", {}, value)];
  }

  function chart(a, points) {
    const numeric = points.filter((p) => typeof p.value === "number");
    if (numeric.length < 2) return h("p", { class: "empty", id: "alarm-readings-empty" }, t("alarm_no_readings"));
    const W = 340, H = 120, P = 6;
    const xs = numeric.map((p) => p.ts), ys = numeric.map((p) => p.value);
    if (typeof a.threshold === "number") ys.push(a.threshold);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
    const y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1);
    const X = (v) => P + (v - x0) / (x1 - x0) * (W - 2 * P);
    const Y = (v) => H - P - (v - y0) / (y1 - y0) * (H - 2 * P);
    const el = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "alarm-chart", id: "alarm-chart", role: "img" });
    if (typeof a.threshold === "number") {
      el.append(svg("line", { x1: P, x2: W - P, y1: Y(a.threshold), y2: Y(a.threshold), class: "threshold" }));
    }
    if (a.raised_at >= x0 && a.raised_at <= x1) {
      el.append(svg("line", { x1: X(a.raised_at), x2: X(a.raised_at), y1: P, y2: H - P, class: "raised" }));
    }
    const d = numeric.map((p, i) => (i ? "L" : "M") + X(p.ts).toFixed(1) + "," + Y(p.value).toFixed(1)).join(" ");
    el.append(svg("path", { d, class: "series", "data-points": numeric.length }));
    // The range of values and of time, at the corners.
    const label = (x, y, text, anchor) => { const l = svg("text", { x, y, "text-anchor": anchor || "start" }); l.textContent = text; return l; };
    el.append(label(P + 2, P + 9, fmtValue(y1, a.point)), label(P + 2, H - P - 2, fmtValue(y0, a.point)),
      label(W - P - 2, H - P - 2, I.fmtTime(x1).slice(-8), "end"));
    if (typeof a.threshold === "number") el.append(label(W - P - 2, Y(a.threshold) - 3, t("alarm_threshold") + " " + fmtValue(a.threshold, a.point), "end"));
    const last = numeric[numeric.length - 1];
    return h("div", {}, el, h("p", { class: "hint" }, t("alarm_readings_hint") + " · " + t("alarm_last") + " " + fmtValue(last.value, a.point) + " @ " + I.fmtTime(last.ts)));
  }

  function journalList(entries) {
    return h("ol", { class: "alarm-journal", id: "alarm-journal" }, entries.slice().reverse().map((e) =>
      h("li", { dataset: { transition: e.transition } },
        h("div", { class: "when" }, I.fmtTime(e.at), " · ", h("b", {}, t("tr_" + e.transition)), " · ", e.user,
          e.disposition ? h("span", { class: "badge disposition " + e.disposition, dataset: { disposition: e.disposition } }, t("disp_badge_" + e.disposition))
            : e.false_alarm ? h("span", { class: "badge false-alarm" }, t("alarm_false")) : null),
        e.comment ? h("div", { class: "comment" }, e.comment) : null)));
  }

  function ackForm(a) {
    if (!canHandleAlarms() || !(a.state === "active_unacked" || a.state === "cleared_unacked")) return null;
    const comment = h("textarea", { name: "comment", id: "alarm-ack-comment", rows: 3, maxlength: 1000, placeholder: t("alarm_ack_placeholder") });
    const error = h("p", { class: "error", id: "alarm-ack-error", hidden: true });
    const button = h("button", { type: "submit", id: "alarm-ack-button" }, t("alarm_ack"));
    return h("form", {
      class: "alarm-ack", id: "alarm-ack",
      onsubmit: async (ev) => {
        ev.preventDefault();
        button.disabled = true; error.hidden = true;
        try {
          const text = comment.value.trim();
          const done = await post("/api/v1/alarms/" + a.id + "/ack", text ? { comment: text } : {});
          window.CG.alarmChanged(done);
          await load(a.id);
        } catch (e) {
          error.textContent = t("action_failed") + ": " + e.message; error.hidden = false; button.disabled = false;
        }
      },
    }, h("label", {}, h("span", {}, t("comment")), comment), error, button);
  }

  // A latched alarm whose condition is gone is reset here too, with the board's dialog (a fire
  // alarm asks what it was; a real fire goes on to its incident report).
  function resetButton(a) {
    const latched = (a.class === "fire" || a.class === "gas") && !a.condition_active && a.state !== "cleared";
    if (!canHandleAlarms() || !latched || !window.CG.alarmAction) return null;
    return h("p", { class: "alarm-reset" }, h("button", { type: "button", id: "alarm-reset-button",
      onclick: () => window.CG.alarmAction(a, "reset", () => load(a.id)) }, t("reset")));
  }

  function render() {
    const root = section();
    if (!shown) { root.replaceChildren(h("p", { class: "empty" }, t("alarm_loading"))); return; }
    const back = h("p", { class: "back" }, h("a", { href: "#/" }, "← " + t("alarm_back")), " · ",
      h("a", { href: "#/history", id: "alarm-history-link" }, t("alarm_history")));
    if (shown.error) { root.replaceChildren(back, h("p", { class: "empty", id: "alarm-error" }, shown.error)); return; }
    const a = shown.alarm;
    const where = place(a.school, a.device);
    const value = a.value === null || a.value === undefined ? null : fmtValue(a.value, a.point);
    const threshold = typeof a.threshold === "number" ? fmtValue(a.threshold, a.point) : null;
    const facts = [
      fact(t("school"), a.school),
      fact(t("alarm_place"), where),
      fact(t("alarm_device"), a.device + " / " + a.point),
      fact(t("alarm_rule"), a.rule),
      fact(t("alarm_message"), a.message),
      fact(t("alarm_value"), value && threshold ? value + " (" + t("alarm_threshold") + " " + threshold + ")" : value),
      fact(t("alarm_raised"), I.fmtTime(a.raised_at)),
      fact(t("alarm_acked"), a.acked_by ? a.acked_by + " · " + I.fmtTime(a.acked_at) + (a.ack_comment ? " · " + a.ack_comment : "") : null),
      fact(t("alarm_cleared"), a.cleared_at ? I.fmtTime(a.cleared_at) : null),
      fact(t("alarm_shelved"), a.shelved && a.shelved.until_ms > Date.now() ? I.fmtTime(a.shelved.until_ms) + " · " + a.shelved.reason : null),
    ].filter(Boolean).flat();
    // (replaceChildren would write a null out as the text "null".)
    root.replaceChildren(...[
      back,
      h("h2", { class: "alarm-title", id: "alarm-title" },
        h("span", { class: "badge " + a.class }, t("class_" + a.class)), " ",
        a.drill ? h("span", { class: "badge drill" }, t("drill")) : null,
        // Raised while nobody was signed on in a duty room covering the school.
        a.unattended ? h("span", { class: "badge unattended", id: "alarm-unattended" }, t("unattended")) : null,
        " #" + a.id + " " + a.message),
      h("div", { class: "alarm-state " + a.state, id: "alarm-state", dataset: { state: a.state } }, t("state_" + a.state)),
      ackForm(a),
      resetButton(a),
      // Reset as a real fire: its incident report (信息报告).
      shown.journal.some((e) => e.transition === "reset" && e.disposition === "real")
        ? h("p", { class: "alarm-incident" }, h("a", { href: "#/incidents/new/" + a.id, id: "alarm-incident-link" }, t("view_incidents"))) : null,
      h("dl", { class: "alarm-facts" }, facts),
      h("h3", {}, t("alarm_readings")), chart(a, shown.points),
      h("h3", {}, t("alarm_journal")), journalList(shown.journal)].filter(Boolean));
  }

  // Anything that happens to the alarm shown (a transition, a notification attempt) reloads it.
  let again = null;
  window.CG.onStream("alarm", (e) => {
    if (state.view !== "alarm" || !shown || String(e.id) !== String(shown.id)) return;
    clearTimeout(again);
    again = setTimeout(() => load(shown.id), 300);
  });

  window.CG.view("alarm", {
    route: /^alarms\/(\d+)$/,
    show() {
      const id = state.params && state.params[0];
      if (!shown || String(shown.id) !== String(id)) { shown = null; render(); }
      else render();
      if (id) load(id);
    },
    reload() { if (state.view === "alarm" && shown) load(shown.id); },
  });
})();
