// campusguard console texts: the bureau's ticket view: filters, exports, per-school stats.
CG_I18N.add({
  "zh-CN": {
    view_bureau: "教育局督办", f_school: "学校", f_state: "状态", f_category: "类别", f_grade: "等级", f_overdue: "仅逾期",
    f_supervised: "仅督办", supervise: "挂牌督办", unsupervise: "取消督办", export_month: "导出月份", export_csv: "导出 CSV",
    export_xlsx: "导出 Excel", export_json: "导出 JSON", stats: "各校统计", open_count: "未销号", overdue_count: "逾期",
    supervised_count: "督办", group: "分组", st_found: "新发现", st_open: "未销号", st_overdue: "逾期", st_supervised: "督办",
    st_closed: "本期销号", district_this_month: "本月各校情况", by_category: "按类别", by_grade: "按等级",
    trend_12: "近12个月趋势（蓝：新发现，绿：销号）", calendar: "月报上报情况", district_file: "下载全区问题隐患清单（Excel）",
    drills_compliance: "应急演练达标情况（近12个月）", drills_held: "已演练", drills_required: "应演练",
  },
  en: {
    view_bureau: "Bureau", f_school: "School", f_state: "State", f_category: "Category", f_grade: "Grade",
    f_overdue: "Overdue only", f_supervised: "Supervised only", supervise: "Supervise",
    unsupervise: "Unsupervise", export_month: "Month", export_csv: "Export CSV", export_xlsx: "Export Excel",
    export_json: "Export JSON", stats: "Per school", open_count: "Open", overdue_count: "Overdue",
    supervised_count: "Supervised", group: "Group", st_found: "Found", st_open: "Open", st_overdue: "Overdue",
    st_supervised: "Supervised", st_closed: "Closed", district_this_month: "Schools this month",
    by_category: "By category", by_grade: "By grade", trend_12: "Last 12 months (blue: found, green: closed)",
    calendar: "Monthly reports", district_file: "Download the district hazard list (Excel)",
    drills_compliance: "Drills against the target (last 12 months)", drills_held: "Held", drills_required: "Required",
  },
});
