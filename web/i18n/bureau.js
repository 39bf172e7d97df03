// campusguard console texts: the bureau's ticket view: filters, exports, per-school stats.
CG_I18N.add({
  "zh-CN": {
    view_bureau: "教育局督办", f_school: "学校", f_state: "状态", f_category: "类别", f_grade: "等级", f_overdue: "仅逾期",
    f_supervised: "仅督办", supervise: "挂牌督办", unsupervise: "取消督办", export_month: "导出月份", export_csv: "导出 CSV",
    export_xlsx: "导出 Excel", export_json: "导出 JSON", stats: "各校统计", open_count: "未销号", overdue_count: "逾期",
    supervised_count: "督办",
  },
  en: {
    view_bureau: "Bureau", f_school: "School", f_state: "State", f_category: "Category", f_grade: "Grade",
    f_overdue: "Overdue only", f_supervised: "Supervised only", supervise: "Supervise",
    unsupervise: "Unsupervise", export_month: "Month", export_csv: "Export CSV", export_xlsx: "Export Excel",
    export_json: "Export JSON", stats: "Per school", open_count: "Open", overdue_count: "Overdue",
    supervised_count: "Supervised",
  },
});
