// campusguard console texts: the school-safety view: its open tickets and their actions.
CG_I18N.add({
  "zh-CN": {
    view_school: "学校安全办", f_deadline: "整改时限", f_done: "整改情况", f_plan: "管控计划", f_interim: "临时管控措施",
    school_open: "本校未销号工单", register_hazard: "登记隐患", f_before_photo: "整改前照片", f_after_photo: "整改后照片",
    report_month: "月报", report_due: "截止", report_rows: "条数", report_submit: "上报本月隐患排查月报",
    report_confirm: "上报后本月台账将冻结，确定上报？", rs_submitted: "已按时上报", rs_late: "逾期上报", rs_missing: "未上报",
  },
  en: {
    view_school: "School safety", f_deadline: "Deadline", f_done: "What was done", f_plan: "Plan",
    f_interim: "Interim measures", school_open: "Open tickets of my school", register_hazard: "Register a hazard",
    f_before_photo: "Photo before", f_after_photo: "Photo after", report_month: "Monthly report", report_due: "due",
    report_rows: "rows", report_submit: "Submit this month's hazard report",
    report_confirm: "Submitting freezes this month's ledger. Submit?", rs_submitted: "submitted", rs_late: "late",
    rs_missing: "missing",
  },
});
