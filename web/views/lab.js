// campusguard console, the lab view: one card per chemical cabinet with its live values
// (refreshed every 5 s), the alarmed points marked, and a 24 h temperature chart from the
// local history (inline SVG). Texts in web/i18n/lab.js.
(function () {
  "use strict";
  const { I, t, state, h, svg, api, fmtValue, isShelved, CLASS_ORDER } = window.CG;
  const CABINET_POINTS = ["temp_c", "rh_pct", "voc_ppm", "lel_pct", "fan_on", "airflow_mps", "door_open"];
  let labTimer = null;
  let chartsAt = 0;

  async function loadLab() {
    clearTimeout(labTimer);
    if (state.view !== "lab") return;
    labTimer = setTimeout(loadLab, 5000);
    let sensors;
    try { sensors = await api("/api/v1/sensors"); } catch (e) { return; }
    const cabinets = new Map();
    for (const s of sensors) {
      if (s.profile !== "chem_cabinet") continue;
      const key = s.school + "/" + s.device;
      const c = cabinets.get(key) || { school: s.school, device: s.device, building: s.building, room: s.room, values: {} };
      c.values[s.point] = s;
      cabinets.set(key, c);
    }
    const box = document.getElementById("cabinets");
    document.getElementById("cabinets-empty").hidden = cabinets.size > 0;
    const refreshCharts = Date.now() - chartsAt > 60000;
    for (const [key, c] of [...cabinets.entries()].sort()) {
      let card = box.querySelector('[data-cabinet="' + CSS.escape(key) + '"]');
      if (!card) {
        const d = state.devices.get(key) || {};
        card = h("article", { class: "cabinet", dataset: { cabinet: key } },
          h("h3", {}, d.name || c.device), h("div", { class: "where" }, [c.school, c.building, c.room].filter(Boolean).join(" · ")),
          h("dl", {}, CABINET_POINTS.map((p) => h("div", { dataset: { point: p } }, h("dt", {}, t("p_" + p)),
            h("dd", { dataset: { sensor: key + "/" + p } }, "–")))),
          h("div", { class: "chart-title where" }, t("chart_24h")), svg("svg", { viewBox: "0 0 300 90", preserveAspectRatio: "none" }));
        box.append(card);
        chartsAt = 0;
      }
      for (const p of CABINET_POINTS) {
        const dd = card.querySelector('dd[data-sensor="' + CSS.escape(key + "/" + p) + '"]');
        const s = c.values[p];
        dd.textContent = s ? fmtValue(s.value, p) : "–";
        dd.dataset.value = s ? String(s.value) : "";
        dd.title = s ? I.fmtTime(s.ts) : "";
      }
      if (refreshCharts || chartsAt === 0) drawChart(card, key);
    }
    if (refreshCharts || chartsAt === 0) chartsAt = Date.now();
    renderLabStates();
  }
  function renderLabStates() {
    const rank = (c) => CLASS_ORDER[c] ?? 9;
    document.querySelectorAll(".cabinet").forEach((card) => {
      const key = card.dataset.cabinet;
      let worst = null;
      card.querySelectorAll("dl div").forEach((d) => d.classList.remove("alarmed"));
      for (const a of state.alarms.values()) {
        if (a.school + "/" + a.device !== key || isShelved(a)) continue;
        if (worst === null || rank(a.class) < rank(worst)) worst = a.class;
        const cell = card.querySelector('dl div[data-point="' + CSS.escape(a.point) + '"]');
        if (cell) cell.classList.add("alarmed");
      }
      card.className = "cabinet" + (worst ? " " + worst : "");
      card.dataset.state = worst || "ok";
    });
  }
  async function drawChart(card, key) {
    const to = Date.now();
    let body;
    try { body = await api("/api/v1/sensors/" + key + "/temp_c/history?from=" + (to - 86400000) + "&to=" + to + "&limit=20000"); }
    catch (e) { return; }
    const points = body.points.filter((p) => typeof p.value === "number");
    const chart = card.querySelector("svg");
    chart.replaceChildren();
    if (points.length < 2) {
      chart.append(Object.assign(svg("text", { x: 150, y: 48, "text-anchor": "middle" }), { textContent: t("no_data") }));
      return;
    }
    // The x axis spans the last 24 h, or less when the history is younger (a new device).
    const from = Math.max(to - 86400000, points[0].ts);
    const span = Math.max(to - from, 60000);
    // At most ~300 points: keep the min and max of each bucket so spikes stay visible.
    const buckets = 150;
    const byBucket = new Map();
    for (const p of points) {
      const b = Math.min(buckets - 1, Math.max(0, Math.floor(((p.ts - from) / span) * buckets)));
      const cur = byBucket.get(b);
      if (!cur) byBucket.set(b, { min: p, max: p });
      else { if (p.value < cur.min.value) cur.min = p; if (p.value > cur.max.value) cur.max = p; }
    }
    const kept = [...byBucket.values()].flatMap((b) => (b.min === b.max ? [b.min] : [b.min, b.max])).sort((a, b) => a.ts - b.ts);
    let lo = Math.min(...kept.map((p) => p.value)), hi = Math.max(...kept.map((p) => p.value));
    if (hi - lo < 1) { hi += 0.5; lo -= 0.5; }
    const x = (ts) => ((ts - from) / span) * 300;
    const y = (v) => 80 - ((v - lo) / (hi - lo)) * 70;
    chart.append(svg("polyline", { points: kept.map((p) => x(p.ts).toFixed(1) + "," + y(p.value).toFixed(1)).join(" ") }));
    const label = (tx, ty, text, anchor) => { const e = svg("text", { x: tx, y: ty, "text-anchor": anchor || "start" }); e.textContent = text; return e; };
    const hhmm = (ms) => new Date(ms).toLocaleTimeString(I.lang === "en" ? "en-GB" : "zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false });
    chart.append(label(2, 10, hi.toFixed(1) + " °C"), label(2, 88, lo.toFixed(1) + " °C"),
      label(48, 88, "← " + hhmm(from)), label(298, 88, hhmm(to), "end"));
    chart.dataset.points = String(points.length);
  }

  window.CG.view("lab", {
    roles: { lab_manager: 1, operator: 2, admin: 2, school_safety: 3, bureau: 3 },
    show: loadLab,
    alarms: renderLabStates,
  });
})();
