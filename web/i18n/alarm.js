// campusguard console texts: an alarm's own page (web/views/alarm.js).
CG_I18N.add({
  "zh-CN": {
    view_alarm: "报警详情", alarm_back: "返回", alarm_loading: "加载中…", alarm_not_found: "没有这条报警，或无权查看",
    alarm_place: "位置", alarm_device: "设备", alarm_rule: "规则", alarm_message: "内容", alarm_value: "数值",
    alarm_threshold: "阈值", alarm_raised: "报警时间", alarm_acked: "确认", alarm_cleared: "恢复时间", alarm_shelved: "搁置至",
    alarm_readings: "报警前后读数", alarm_readings_hint: "前后30分钟，虚线为阈值，竖线为报警时刻", alarm_last: "最新",
    alarm_no_readings: "暂无读数", alarm_journal: "处置记录", alarm_ack: "确认报警", alarm_ack_placeholder: "处置情况（可选）",
    tr_raised: "报警", tr_reraised: "再次报警", tr_escalated: "升级", tr_deescalated: "降级", tr_returned_to_normal: "数值恢复",
    tr_cleared: "清除", tr_acknowledged: "确认", tr_reset: "复位", tr_shelved: "搁置", tr_unshelved: "取消搁置",
    tr_action: "联动", tr_notified: "通知", alarm_false: "误报", alarm_history: "报警记录",
  },
  en: {
    view_alarm: "Alarm", alarm_back: "Back", alarm_loading: "Loading…", alarm_not_found: "No such alarm, or not yours to see",
    alarm_place: "Place", alarm_device: "Device", alarm_rule: "Rule", alarm_message: "Message", alarm_value: "Value",
    alarm_threshold: "threshold", alarm_raised: "Raised", alarm_acked: "Acknowledged", alarm_cleared: "Cleared",
    alarm_shelved: "Shelved until", alarm_readings: "Readings around the alarm",
    alarm_readings_hint: "30 min before and after; dashed: threshold, vertical: the raise", alarm_last: "last",
    alarm_no_readings: "No readings", alarm_journal: "Journal", alarm_ack: "Acknowledge",
    alarm_ack_placeholder: "What was done (optional)", tr_raised: "Raised", tr_reraised: "Raised again",
    tr_escalated: "Escalated", tr_deescalated: "De-escalated", tr_returned_to_normal: "Back to normal", tr_cleared: "Cleared",
    tr_acknowledged: "Acknowledged", tr_reset: "Reset", tr_shelved: "Shelved", tr_unshelved: "Unshelved",
    tr_action: "Action", tr_notified: "Notified", alarm_false: "false alarm", alarm_history: "Alarm history",
  },
});
