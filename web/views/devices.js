// campusguard console, the devices page (#/devices): every device the gateway knows and how
// (config file, announced, commissioned here, or only heard from). Admins and lab managers
// register an unregistered or announced device (profile, building, room, name), edit a
// commissioned one, change its threshold overrides and decommission it; each change is in
// force at once and audited (the audit is shown under the device). A device of the config
// file is read-only here and says so. Texts in web/i18n/devices.js.
(function () {
  "use strict";
  const { I, t, state, h, api, loadDevices } = window.CG;
  let selected = null; // "school/device"
  let audit = [];

  function section() { return document.getElementById("view-devices"); }
  function mayCommission() { return state.me && (state.me.role === "admin" || state.me.role === "lab_manager"); }
  function send(method, path, body) {
    return api(path, { method, headers: { "Content-Type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  }
  function devicePath(d) { return "/api/v1/devices/" + encodeURIComponent(d.school) + "/" + encodeURIComponent(d.id); }
  function profiles() {
    return [...new Set([...state.devices.values()].map((d) => d.profile).filter(Boolean))].sort();
  }

  async function refresh() {
    await loadDevices();
    if (selected) {
      const d = state.devices.get(selected);
      try { audit = d ? (await api(devicePath(d) + "/audit")).audit : []; } catch (e) { audit = []; }
    }
    render();
  }

  function input(name, value, attrs) {
    return h("label", {}, h("span", {}, t("d_" + name)), " ",
      h("input", Object.assign({ name, id: "device-" + name, value: value || "", maxlength: 100 }, attrs || {})));
  }

  // Register (unregistered, announced) or edit (commissioned) form.
  function editForm(d) {
    const error = h("p", { class: "error", id: "device-error", hidden: true });
    const commissioned = d.registration === "console";
    const list = h("datalist", { id: "device-profiles" }, profiles().map((p) => h("option", { value: p })));
    const form = h("form", {
      class: "device-form", id: "device-form",
      onsubmit: async (ev) => {
        ev.preventDefault();
        error.hidden = true;
        const f = new FormData(form);
        const fields = {};
        for (const k of ["profile", "building", "room", "name"]) fields[k] = String(f.get(k) || "").trim();
        try {
          if (commissioned) await send("PATCH", devicePath(d), fields);
          else await send("POST", "/api/v1/devices", Object.assign({ school: d.school, device: d.id }, fields));
          await refresh();
        } catch (e) { error.textContent = t("action_failed") + ": " + e.message; error.hidden = false; }
      },
    },
      list,
      input("profile", d.profile, { list: "device-profiles", required: true, maxlength: 64 }),
      input("building", d.building), input("room", d.room), input("name", d.name),
      h("button", { type: "submit", id: "device-save" }, commissioned ? t("d_save") : t("d_register")),
      error);
    return form;
  }

  // Overrides as JSON: {"<rule id>": {"alarm": 45.0, "warning": 40.0, …}}.
  function overridesForm(d, current) {
    const error = h("p", { class: "error", id: "overrides-error", hidden: true });
    const text = h("textarea", { id: "device-overrides", rows: 4, cols: 48 }, JSON.stringify(current || {}, null, 1));
    return h("form", {
      class: "device-form", id: "overrides-form",
      onsubmit: async (ev) => {
        ev.preventDefault();
        error.hidden = true;
        let body;
        try { body = JSON.parse(text.value || "{}"); } catch (e) { error.textContent = t("d_bad_json"); error.hidden = false; return; }
        try { await send("PUT", devicePath(d) + "/overrides", body); await refresh(); }
        catch (e) { error.textContent = t("action_failed") + ": " + e.message; error.hidden = false; }
      },
    }, h("label", {}, h("span", {}, t("d_overrides")), h("br"), text), h("p", { class: "hint" }, t("d_overrides_hint")),
    h("button", { type: "submit", id: "overrides-save" }, t("d_save_overrides")), error);
  }

  function detail(d) {
    if (!d) return null;
    const parts = [h("h3", { id: "device-title" }, d.school + " / " + d.id, " ", h("span", { class: "badge reg-" + d.registration }, t("reg_" + d.registration)))];
    if (d.registration === "config") {
      parts.push(h("p", { class: "hint", id: "device-readonly" }, t("d_readonly")));
    } else if (mayCommission()) {
      parts.push(editForm(d));
      if (d.registration === "console") {
        const last = audit.length ? audit[audit.length - 1].after : null;
        parts.push(overridesForm(d, last && last.overrides));
        parts.push(h("button", {
          type: "button", id: "device-decommission", class: "danger",
          onclick: async () => {
            if (!window.confirm(t("d_confirm_decommission"))) return;
            try { await send("DELETE", devicePath(d)); await refresh(); } catch (e) { window.alert(e.message); }
          },
        }, t("d_decommission")));
      }
    }
    if (audit.length) {
      parts.push(h("h4", {}, t("d_audit")), h("ol", { class: "device-audit", id: "device-audit" }, audit.slice().reverse().map((e) =>
        h("li", { dataset: { action: e.action } }, I.fmtTime(e.at), " · ", e.user, " · ", h("b", {}, t("da_" + e.action)),
          h("div", { class: "hint" }, t("d_before"), " ", JSON.stringify(e.before), " → ", t("d_after"), " ", JSON.stringify(e.after))))));
    }
    return h("div", { class: "device-detail", id: "device-detail" }, parts);
  }

  function render() {
    const devices = [...state.devices.values()].sort((a, b) =>
      (a.registration === "unregistered" ? 0 : 1) - (b.registration === "unregistered" ? 0 : 1) ||
      (a.school + a.id).localeCompare(b.school + b.id));
    const cols = ["school", "d_device", "d_registration", "d_profile", "d_building", "d_room", "d_name", "d_last_seen"];
    section().replaceChildren(
      h("h2", {}, t("view_devices")),
      h("div", { class: "columns" },
        h("div", { class: "main-col" }, h("table", { class: "board devices", id: "devices-table" },
          h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, t(c))))),
          h("tbody", {}, devices.map((d) => h("tr", {
            class: selected === d.school + "/" + d.id ? "selected" : null,
            dataset: { device: d.school + "/" + d.id, registration: d.registration },
            onclick: async () => { selected = d.school + "/" + d.id; audit = []; await refresh(); },
          },
            h("td", {}, d.school), h("td", {}, h("a", { href: "#/devices" }, d.id)),
            h("td", {}, t("reg_" + d.registration)), h("td", {}, d.profile || ""), h("td", {}, d.building || ""),
            h("td", {}, d.room || ""), h("td", {}, d.name || ""), h("td", {}, d.last_seen_ms ? I.fmtTime(d.last_seen_ms) : "")))))),
        h("aside", { class: "side-col" }, detail(state.devices.get(selected)))));
  }

  window.CG.view("devices", {
    // A page of its own, linked from the control view (not a tab).
    route: /^devices$/,
    show() { render(); refresh(); },
  });
})();
