// campusguard console texts: the labs: chemical cabinets and their charts.
CG_I18N.add({
  "zh-CN": {
    view_lab: "实验室", lab_title: "危化品柜", no_cabinets: "没有危化品柜数据", p_temp_c: "温度", p_rh_pct: "湿度",
    p_voc_ppm: "VOC", p_lel_pct: "可燃气(%LEL)", p_fan_on: "风机", p_airflow_mps: "风速", p_door_open: "柜门",
    chart_24h: "24小时温度曲线",
  },
  en: {
    view_lab: "Labs", lab_title: "Chemical cabinets", no_cabinets: "No chemical cabinets reporting",
    p_temp_c: "Temp", p_rh_pct: "Humidity", p_voc_ppm: "VOC", p_lel_pct: "LEL", p_fan_on: "Fan",
    p_airflow_mps: "Airflow", p_door_open: "Door", chart_24h: "24 h temperature",
  },
});
