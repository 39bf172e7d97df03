// campusguard console: texts in zh-CN (default) and English, and local-time formatting.
// Loaded before app.js / login.js; exposes window.CG_I18N.
(function () {
  "use strict";
  const zh = {
    brand: "校园安全监测", login_title: "登录", user_name: "用户名", password: "密码",
    login_button: "登录", login_failed: "用户名或密码错误", login_locked: "登录失败次数过多，请稍后再试",
    logout: "退出", lang_switch: "English",
    view_control: "消防控制室", view_lab: "实验室", view_bureau: "教育局督办", view_school: "学校安全办",
    stream_ok: "实时连接正常", stream_down: "连接中断，正在重连…",
    sound_on: "声音提醒：开", sound_off: "声音提醒：关", sound_alarm: "有未确认报警",
    kpi_rate: "近1小时报警数", kpi_guideline: "指引 ≤ 6/小时", kpi_avg: "24小时平均",
    kpi_floods: "报警泛滥(24h)", kpi_chatter: "频繁报警", kpi_stale: "陈旧报警(>24h)",
    summary: "各校报警概况", board: "实时报警", shelved_list: "已搁置", no_alarms: "当前没有报警",
    col_class: "类别", col_school: "学校", col_place: "位置", col_sensor: "传感器",
    col_message: "内容", col_value: "数值", col_time: "时间", col_state: "状态", col_actions: "操作",
    first_alarm: "首警", drill: "演练",
    drills: "演练模式", drill_hint: "演练期间该范围内的报警标记为演练：不响铃、不闪烁、不生成工单。",
    drill_whole_school: "全校", drill_start: "开始演练", drill_end: "结束演练", drill_active: "演练中",
    drill_until: "至", drill_by: "发起人", dialog_drill: "开始演练", no_drill_scopes: "暂无设备",
    class_fire: "火警", class_gas: "气体", class_supervisory: "监管", class_fault: "故障",
    state_active_unacked: "未确认", state_active_acked: "已确认", state_cleared_unacked: "已恢复未确认",
    state_cleared: "已清除", latched: "已锁存，待复位",
    ack: "确认", shelve: "搁置", reset: "复位", cancel: "取消", submit: "提交",
    comment: "备注", reason: "原因", duration: "时长", false_alarm: "误报",
    dialog_ack: "确认报警", dialog_shelve: "搁置报警", dialog_reset: "复位报警",
    action_failed: "操作失败", shelved_until: "搁置至",
    school: "学校", total: "合计", unacked: "未确认",
    lab_title: "危化品柜", no_cabinets: "没有危化品柜数据",
    p_temp_c: "温度", p_rh_pct: "湿度", p_voc_ppm: "VOC", p_lel_pct: "可燃气(%LEL)",
    p_fan_on: "风机", p_airflow_mps: "风速", p_door_open: "柜门",
    on: "开", off: "关", open: "开", closed: "关", chart_24h: "24小时温度曲线", no_data: "暂无数据",
    state_ok: "正常", updated: "更新",
    tickets: "隐患工单", tickets_disabled: "工单模块未启用",
    tickets_disabled_hint: "网关尚未提供工单接口；启用后此处显示各校隐患工单。",
    f_school: "学校", f_state: "状态", f_category: "类别", f_grade: "等级", f_overdue: "仅逾期",
    f_supervised: "仅督办", all: "全部", search: "查询",
    t_number: "编号", t_school: "学校", t_location: "位置", t_category: "类别", t_grade: "等级",
    t_state: "状态", t_deadline: "整改时限", t_supervised: "督办", t_description: "隐患描述",
    t_unit: "责任单位", t_person: "责任人", t_measures: "整改措施", t_found: "发现时间",
    t_history: "处理记录", overdue: "逾期", supervise: "挂牌督办", unsupervise: "取消督办",
    export_month: "导出月份", export_csv: "导出 CSV", export_xlsx: "导出 Excel", export_json: "导出 JSON",
    stats: "各校统计", open_count: "未销号", overdue_count: "逾期", supervised_count: "督办",
    ts_registered: "已登记", ts_rectifying: "整改中", ts_deferred: "管控中", ts_reported: "待验收", ts_closed: "已销号",
    g_general: "一般", g_major: "重大",
    c_fire: "消防", c_security: "治安", c_lab_chemical: "实验室/危化品", c_food_water: "食品/饮水",
    c_building: "校舍", c_traffic: "交通", c_other: "其他",
    a_assign: "指派整改", a_defer: "暂缓管控", a_report: "上报整改", a_verify: "验收销号",
    a_reject: "验收不通过", a_fix_now: "立查立改",
    a_create: "登记", a_attach: "上传附件", a_supervise: "挂牌督办", a_unsupervise: "取消督办",
    f_deadline: "整改时限", f_done: "整改情况", f_plan: "管控计划", f_interim: "临时管控措施",
    school_open: "本校未销号工单", detail: "详情", close: "关闭", no_tickets: "没有工单",
    forbidden: "无权限",
  };
  const en = {
    brand: "Campus Safety Monitor", login_title: "Sign in", user_name: "User name", password: "Password",
    login_button: "Sign in", login_failed: "Wrong user name or password", login_locked: "Too many failed logins; try again later",
    logout: "Sign out", lang_switch: "中文",
    view_control: "Control room", view_lab: "Labs", view_bureau: "Bureau", view_school: "School safety",
    stream_ok: "Live", stream_down: "Disconnected, reconnecting…",
    sound_on: "Sound: on", sound_off: "Sound: off", sound_alarm: "Unacknowledged alarms",
    kpi_rate: "Alarms, last hour", kpi_guideline: "guideline ≤ 6/h", kpi_avg: "24 h average",
    kpi_floods: "Floods (24 h)", kpi_chatter: "Chattering", kpi_stale: "Stale (>24 h)",
    summary: "By school", board: "Live alarms", shelved_list: "Shelved", no_alarms: "No alarms",
    col_class: "Class", col_school: "School", col_place: "Place", col_sensor: "Sensor",
    col_message: "Message", col_value: "Value", col_time: "Time", col_state: "State", col_actions: "Actions",
    first_alarm: "First", drill: "Drill",
    drills: "Drill mode", drill_hint: "Alarms in a drill's scope are marked Drill: no sound, no flashing, no tickets.",
    drill_whole_school: "Whole school", drill_start: "Start drill", drill_end: "End drill", drill_active: "Drill on",
    drill_until: "until", drill_by: "by", dialog_drill: "Start drill", no_drill_scopes: "No devices yet",
    class_fire: "Fire", class_gas: "Gas", class_supervisory: "Supervisory", class_fault: "Fault",
    state_active_unacked: "Unacknowledged", state_active_acked: "Acknowledged", state_cleared_unacked: "Cleared, unacked",
    state_cleared: "Cleared", latched: "Latched, needs reset",
    ack: "Acknowledge", shelve: "Shelve", reset: "Reset", cancel: "Cancel", submit: "Submit",
    comment: "Comment", reason: "Reason", duration: "Duration", false_alarm: "False alarm",
    dialog_ack: "Acknowledge alarm", dialog_shelve: "Shelve alarm", dialog_reset: "Reset alarm",
    action_failed: "Action failed", shelved_until: "Shelved until",
    school: "School", total: "Total", unacked: "Unacked",
    lab_title: "Chemical cabinets", no_cabinets: "No chemical cabinets reporting",
    p_temp_c: "Temp", p_rh_pct: "Humidity", p_voc_ppm: "VOC", p_lel_pct: "LEL",
    p_fan_on: "Fan", p_airflow_mps: "Airflow", p_door_open: "Door",
    on: "on", off: "off", open: "open", closed: "closed", chart_24h: "24 h temperature", no_data: "No data",
    state_ok: "Normal", updated: "Updated",
    tickets: "Hazard tickets", tickets_disabled: "Tickets module not enabled (工单模块未启用)",
    tickets_disabled_hint: "The gateway does not serve the tickets API yet; tickets of all schools appear here once it does.",
    f_school: "School", f_state: "State", f_category: "Category", f_grade: "Grade", f_overdue: "Overdue only",
    f_supervised: "Supervised only", all: "All", search: "Search",
    t_number: "Number", t_school: "School", t_location: "Location", t_category: "Category", t_grade: "Grade",
    t_state: "State", t_deadline: "Deadline", t_supervised: "Supervised", t_description: "Description",
    t_unit: "Responsible unit", t_person: "Person", t_measures: "Measures", t_found: "Found at",
    t_history: "History", overdue: "Overdue", supervise: "Supervise", unsupervise: "Unsupervise",
    export_month: "Month", export_csv: "Export CSV", export_xlsx: "Export Excel", export_json: "Export JSON",
    stats: "Per school", open_count: "Open", overdue_count: "Overdue", supervised_count: "Supervised",
    ts_registered: "Registered", ts_rectifying: "Rectifying", ts_deferred: "Deferred", ts_reported: "Reported", ts_closed: "Closed",
    g_general: "General", g_major: "Major",
    c_fire: "Fire", c_security: "Security", c_lab_chemical: "Lab / chemicals", c_food_water: "Food / water",
    c_building: "Buildings", c_traffic: "Traffic", c_other: "Other",
    a_assign: "Assign", a_defer: "Defer", a_report: "Report fix", a_verify: "Verify & close",
    a_reject: "Reject", a_fix_now: "Fix now",
    a_create: "Registered", a_attach: "Attachment added", a_supervise: "Supervised", a_unsupervise: "Supervision lifted",
    f_deadline: "Deadline", f_done: "What was done", f_plan: "Plan", f_interim: "Interim measures",
    school_open: "Open tickets of my school", detail: "Detail", close: "Close", no_tickets: "No tickets",
    forbidden: "Not allowed",
  };
  const dicts = { "zh-CN": zh, en: en };
  let lang = localStorage.getItem("cg_lang") || "zh-CN";
  if (!dicts[lang]) lang = "zh-CN";
  function t(key) { return dicts[lang][key] ?? zh[key] ?? key; }
  function setLang(next) { lang = dicts[next] ? next : "zh-CN"; localStorage.setItem("cg_lang", lang); }
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
  window.CG_I18N = { t, setLang, fmtTime, apply, get lang() { return lang; } };
})();
