// campusguard console: texts in zh-CN (default) and English, and local-time formatting.
// Loaded first by every page; exposes window.CG_I18N. This file holds the mechanism and the
// texts every page shares (login, header, alarm classes and states, dialog buttons); each
// area adds its own with CG_I18N.add() from web/i18n/<area>.js, loaded right after this file.
(function () {
  "use strict";
  const zh = {
    brand: "校园安全监测", login_title: "登录", user_name: "用户名", password: "密码", login_button: "登录",
    login_failed: "用户名或密码错误", login_locked: "登录失败次数过多，请稍后再试", logout: "退出", lang_switch: "English",
    stream_ok: "实时连接正常", stream_down: "连接中断，正在重连…", sound_on: "声音提醒：开", sound_off: "声音提醒：关",
    sound_alarm: "有未确认报警", col_actions: "操作", class_fire: "火警", class_gas: "气体", class_supervisory: "监管",
    class_fault: "故障", state_active_unacked: "未确认", state_active_acked: "已确认", state_cleared_unacked: "已恢复未确认",
    state_cleared: "已清除", cancel: "取消", submit: "提交", comment: "备注", reason: "原因", duration: "时长",
    action_failed: "操作失败", school: "学校", total: "合计", on: "开", off: "关", open: "开", closed: "关",
    no_data: "暂无数据", state_ok: "正常", updated: "更新", all: "全部", search: "查询", detail: "详情", close: "关闭",
    forbidden: "无权限", motion_normal: "闪烁：开", motion_reduced: "闪烁：关（减弱动态）",
    sound_prompt: "点击此处启用报警声音（浏览器重新加载后需点击一次）",
  };
  const en = {
    brand: "Campus Safety Monitor", login_title: "Sign in", user_name: "User name", password: "Password",
    login_button: "Sign in", login_failed: "Wrong user name or password",
    login_locked: "Too many failed logins; try again later", logout: "Sign out", lang_switch: "中文",
    stream_ok: "Live", stream_down: "Disconnected, reconnecting…", sound_on: "Sound: on",
    sound_off: "Sound: off", sound_alarm: "Unacknowledged alarms", col_actions: "Actions", class_fire: "Fire",
    class_gas: "Gas", class_supervisory: "Supervisory", class_fault: "Fault",
    state_active_unacked: "Unacknowledged", state_active_acked: "Acknowledged",
    state_cleared_unacked: "Cleared, unacked", state_cleared: "Cleared", cancel: "Cancel", submit: "Submit",
    comment: "Comment", reason: "Reason", duration: "Duration", action_failed: "Action failed",
    school: "School", total: "Total", on: "on", off: "off", open: "open", closed: "closed", no_data: "No data",
    state_ok: "Normal", updated: "Updated", all: "All", search: "Search", detail: "Detail", close: "Close",
    forbidden: "Not allowed", motion_normal: "Flashing: on", motion_reduced: "Flashing: off (reduced motion)",
    sound_prompt: "Click here to enable the alarm sound (browsers need a click after a reload)",
  };
  const dicts = { "zh-CN": zh, en: en };
  // Keys given twice (by two files) or in one language only: see missing().
  const problems = [];
  let lang = localStorage.getItem("cg_lang") || "zh-CN";
  if (!dicts[lang]) lang = "zh-CN";
  function t(key) { return dicts[lang][key] ?? zh[key] ?? key; }
  function setLang(next) { lang = dicts[next] ? next : "zh-CN"; localStorage.setItem("cg_lang", lang); }
  // Adds an area's texts: { "zh-CN": {key: text, …}, en: {…} }. Every key in both languages.
  function add(texts) {
    for (const [code, dict] of Object.entries(dicts)) {
      for (const [key, text] of Object.entries(texts[code] || {})) {
        if (key in dict) problems.push(code + ": " + key + " given twice");
        dict[key] = text;
      }
    }
    const codes = Object.keys(dicts);
    for (const code of codes) {
      for (const key of Object.keys(texts[code] || {})) {
        for (const other of codes) {
          if (!(texts[other] && key in texts[other])) problems.push(other + ": " + key + " missing");
        }
      }
    }
  }
  // What is wrong with the texts (empty when every key is in every language, once).
  function missing() {
    const out = problems.slice();
    for (const key of Object.keys(zh)) if (!(key in en)) out.push("en: " + key + " missing");
    for (const key of Object.keys(en)) if (!(key in zh)) out.push("zh-CN: " + key + " missing");
    return [...new Set(out)];
  }
  function fmtTime(ms) {
    if (ms === null || ms === undefined || ms === "") return "";
    const d = typeof ms === "number" ? new Date(ms) : new Date(ms);
    if (isNaN(d.getTime())) return String(ms);
    return d.toLocaleString(lang === "en" ? "en-GB" : "zh-CN", { hour12: false });
  }
  // Fills every [data-t] element with its text.
  function apply(root) {
    document.documentElement.lang = lang;
    (root || document).querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
    (root || document).querySelectorAll("[data-t-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.tPlaceholder); });
  }
  window.CG_I18N = { t, setLang, fmtTime, apply, add, missing, get lang() { return lang; } };
})();
