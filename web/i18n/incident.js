// campusguard console texts: incident reports (信息报告, web/views/incident.js) and the reset
// dialog's question of what a fire alarm was (web/views/control.js).
CG_I18N.add({
  "zh-CN": {
    view_incidents: "信息报告", incidents_title: "火灾信息报告", no_incidents: "暂无信息报告",
    reset_what: "这次火警是：", disp_real: "真实火警", disp_false: "误报", disp_test: "测试",
    disp_badge_real: "真实火警", disp_badge_false: "误报", disp_badge_test: "测试",
    inc_new: "填写信息报告", inc_number: "编号", inc_school: "学校", inc_occurred: "发生时间", inc_location: "地点",
    inc_building: "楼宇", inc_room: "房间", inc_device: "设备", inc_what: "事件经过", inc_actions: "处置措施",
    inc_deaths: "死亡人数", inc_injuries: "受伤人数", inc_119_by: "119报警人", inc_119_at: "119报警时间",
    inc_status: "状态", inc_status_draft: "草稿", inc_status_submitted: "已提交", inc_alarm: "关联报警",
    inc_save: "保存草稿", inc_submit: "提交报告", inc_submitted_by: "提交人", inc_updated: "最后修改",
    inc_casualties: "伤亡", inc_frozen: "报告已提交，不能再修改。", inc_not_found: "没有这份信息报告，或无权查看",
    inc_hint_119: "报警人和报警时间需同时填写", inc_back: "返回列表", inc_read_only: "教育局只读",
  },
  en: {
    view_incidents: "Incidents", incidents_title: "Fire incident reports", no_incidents: "No incident reports",
    reset_what: "This fire alarm was:", disp_real: "A real fire", disp_false: "A false alarm", disp_test: "A test",
    disp_badge_real: "real fire", disp_badge_false: "false alarm", disp_badge_test: "test",
    inc_new: "Incident report", inc_number: "Number", inc_school: "School", inc_occurred: "Happened at",
    inc_location: "Place", inc_building: "Building", inc_room: "Room", inc_device: "Device", inc_what: "What happened",
    inc_actions: "Actions taken", inc_deaths: "Deaths", inc_injuries: "Injuries", inc_119_by: "Reported to 119 by",
    inc_119_at: "Reported to 119 at", inc_status: "Status", inc_status_draft: "Draft", inc_status_submitted: "Submitted",
    inc_alarm: "Alarm", inc_save: "Save draft", inc_submit: "Submit report", inc_submitted_by: "Submitted by",
    inc_updated: "Last changed", inc_casualties: "Casualties", inc_frozen: "Submitted: the report can no longer be changed.",
    inc_not_found: "No such incident report, or not yours to see", inc_hint_119: "Give both who called 119 and when",
    inc_back: "Back to the list", inc_read_only: "read only for the bureau",
  },
});
