// campusguard console texts: hazard tickets, shared by the bureau and school-safety views.
CG_I18N.add({
  "zh-CN": {
    tickets: "隐患工单", tickets_disabled: "工单模块未启用", tickets_disabled_hint: "网关尚未提供工单接口；启用后此处显示各校隐患工单。",
    t_number: "编号", t_school: "学校", t_location: "位置", t_category: "类别", t_grade: "等级", t_state: "状态",
    t_deadline: "整改时限", t_supervised: "督办", t_description: "隐患描述", t_unit: "责任单位", t_person: "责任人",
    t_measures: "整改措施", t_found: "发现时间", t_history: "处理记录", overdue: "逾期", ts_registered: "已登记",
    ts_rectifying: "整改中", ts_deferred: "管控中", ts_reported: "待验收", ts_closed: "已销号", g_general: "一般",
    g_major: "重大", c_fire: "消防", c_security: "治安", c_lab_chemical: "实验室/危化品", c_food_water: "食品/饮水",
    c_building: "校舍", c_traffic: "交通", c_other: "其他", a_assign: "指派整改", a_defer: "暂缓管控", a_report: "上报整改",
    a_verify: "验收销号", a_reject: "验收不通过", a_fix_now: "立查立改", a_create: "登记", a_attach: "上传附件",
    a_supervise: "挂牌督办", a_unsupervise: "取消督办", no_tickets: "没有工单",
  },
  en: {
    tickets: "Hazard tickets", tickets_disabled: "Tickets module not enabled (工单模块未启用)",
    tickets_disabled_hint: "The gateway does not serve the tickets API yet; tickets of all schools appear here once it does.",
    t_number: "Number", t_school: "School", t_location: "Location", t_category: "Category", t_grade: "Grade",
    t_state: "State", t_deadline: "Deadline", t_supervised: "Supervised", t_description: "Description",
    t_unit: "Responsible unit", t_person: "Person", t_measures: "Measures", t_found: "Found at",
    t_history: "History", overdue: "Overdue", ts_registered: "Registered", ts_rectifying: "Rectifying",
    ts_deferred: "Deferred", ts_reported: "Reported", ts_closed: "Closed", g_general: "General",
    g_major: "Major", c_fire: "Fire", c_security: "Security", c_lab_chemical: "Lab / chemicals",
    c_food_water: "Food / water", c_building: "Buildings", c_traffic: "Traffic", c_other: "Other",
    a_assign: "Assign", a_defer: "Defer", a_report: "Report fix", a_verify: "Verify & close",
    a_reject: "Reject", a_fix_now: "Fix now", a_create: "Registered", a_attach: "Attachment added",
    a_supervise: "Supervised", a_unsupervise: "Supervision lifted", no_tickets: "No tickets",
  },
});
