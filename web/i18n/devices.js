// campusguard console texts: the devices page (web/views/devices.js).
CG_I18N.add({
  "zh-CN": {
    view_devices: "设备管理", d_device: "设备", d_registration: "登记方式", d_profile: "设备类型", d_building: "楼栋",
    d_room: "房间", d_name: "名称", d_last_seen: "最近上报", reg_config: "配置文件", reg_meta: "设备自报",
    reg_console: "控制台登记", reg_unregistered: "未登记", d_readonly: "此设备在配置文件中定义，控制台只读；请修改配置文件。",
    d_register: "登记设备", d_save: "保存", d_overrides: "阈值覆盖（JSON）",
    d_overrides_hint: "按规则编号填写，如 {\"temp_high\": {\"alarm\": 45}}；{} 为使用设备类型的默认值",
    d_save_overrides: "保存阈值", d_bad_json: "JSON 格式错误", d_decommission: "注销设备",
    d_confirm_decommission: "确定注销该设备？其未恢复的报警条件将清除。", d_audit: "变更记录", d_before: "之前",
    d_after: "之后", da_register: "登记", da_edit: "修改", da_overrides: "阈值", da_decommission: "注销",
  },
  en: {
    view_devices: "Devices", d_device: "Device", d_registration: "Registration", d_profile: "Profile", d_building: "Building",
    d_room: "Room", d_name: "Name", d_last_seen: "Last seen", reg_config: "Config file", reg_meta: "Announced",
    reg_console: "Console", reg_unregistered: "Unregistered",
    d_readonly: "This device is defined in the config file and is read-only here; change the config file.",
    d_register: "Register", d_save: "Save", d_overrides: "Threshold overrides (JSON)",
    d_overrides_hint: "Per rule id, e.g. {\"temp_high\": {\"alarm\": 45}}; {} uses the profile's own",
    d_save_overrides: "Save thresholds", d_bad_json: "Not valid JSON", d_decommission: "Decommission",
    d_confirm_decommission: "Decommission this device? Its active conditions clear.", d_audit: "Changes", d_before: "before",
    d_after: "after", da_register: "Registered", da_edit: "Edited", da_overrides: "Thresholds", da_decommission: "Decommissioned",
  },
});
