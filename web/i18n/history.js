// campusguard console texts: the alarm history (web/views/history.js).
CG_I18N.add({
  "zh-CN": {
    view_history: "报警记录", h_from: "起", h_to: "止", h_building: "楼栋", h_class: "类别", h_state: "状态",
    h_text: "关键字", h_export_csv: "导出 CSV", h_export_xlsx: "导出 Excel", h_id: "编号", h_raised: "报警时间",
    h_place: "位置", h_message: "内容", h_acked: "确认", h_cleared: "恢复时间", h_none: "没有符合条件的报警",
    h_more: "加载更多", link_history: "报警记录", link_devices: "设备管理",
  },
  en: {
    view_history: "History", h_from: "From", h_to: "To", h_building: "Building", h_class: "Class", h_state: "State",
    h_text: "Text", h_export_csv: "Export CSV", h_export_xlsx: "Export Excel", h_id: "No.", h_raised: "Raised",
    h_place: "Place", h_message: "Message", h_acked: "Acknowledged", h_cleared: "Cleared", h_none: "No matching alarms",
    h_more: "More", link_history: "Alarm history", link_devices: "Devices",
  },
});
