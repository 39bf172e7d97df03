// campusguard console texts: the control room: live board, KPIs, drills, alarm actions.
CG_I18N.add({
  "zh-CN": {
    view_control: "消防控制室", kpi_rate: "近1小时报警数", kpi_guideline: "指引 ≤ 6/小时", kpi_avg: "24小时平均",
    kpi_floods: "报警泛滥(24h)", kpi_chatter: "频繁报警", kpi_stale: "陈旧报警(>24h)", summary: "各校报警概况", board: "实时报警",
    shelved_list: "已搁置", no_alarms: "当前没有报警", col_class: "类别", col_school: "学校", col_place: "位置",
    col_sensor: "传感器", col_message: "内容", col_value: "数值", col_time: "时间", col_state: "状态", first_alarm: "首警",
    drill: "演练", drills: "演练模式", drill_hint: "演练期间该范围内的报警标记为演练：不响铃、不闪烁、不生成工单。", drill_whole_school: "全校",
    drill_start: "开始演练", drill_end: "结束演练", drill_active: "演练中", drill_until: "至", drill_by: "发起人",
    dialog_drill: "开始演练", no_drill_scopes: "暂无设备", latched: "已锁存，待复位", ack: "确认", shelve: "搁置", reset: "复位",
    false_alarm: "误报", dialog_ack: "确认报警", dialog_shelve: "搁置报警", dialog_reset: "复位报警", shelved_until: "搁置至",
    unacked: "未确认",
  },
  en: {
    view_control: "Control room", kpi_rate: "Alarms, last hour", kpi_guideline: "guideline ≤ 6/h",
    kpi_avg: "24 h average", kpi_floods: "Floods (24 h)", kpi_chatter: "Chattering",
    kpi_stale: "Stale (>24 h)", summary: "By school", board: "Live alarms", shelved_list: "Shelved",
    no_alarms: "No alarms", col_class: "Class", col_school: "School", col_place: "Place", col_sensor: "Sensor",
    col_message: "Message", col_value: "Value", col_time: "Time", col_state: "State", first_alarm: "First",
    drill: "Drill", drills: "Drill mode",
    drill_hint: "Alarms in a drill's scope are marked Drill: no sound, no flashing, no tickets.",
    drill_whole_school: "Whole school", drill_start: "Start drill", drill_end: "End drill",
    drill_active: "Drill on", drill_until: "until", drill_by: "by", dialog_drill: "Start drill",
    no_drill_scopes: "No devices yet", latched: "Latched, needs reset", ack: "Acknowledge", shelve: "Shelve",
    reset: "Reset", false_alarm: "False alarm", dialog_ack: "Acknowledge alarm", dialog_shelve: "Shelve alarm",
    dialog_reset: "Reset alarm", shelved_until: "Shelved until", unacked: "Unacked",
  },
});
