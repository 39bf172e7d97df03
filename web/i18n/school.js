// campusguard console texts: the school-safety view: its open tickets and their actions.
CG_I18N.add({
  "zh-CN": {
    view_school: "学校安全办", f_deadline: "整改时限", f_done: "整改情况", f_plan: "管控计划", f_interim: "临时管控措施",
    school_open: "本校未销号工单",
  },
  en: {
    view_school: "School safety", f_deadline: "Deadline", f_done: "What was done", f_plan: "Plan",
    f_interim: "Interim measures", school_open: "Open tickets of my school",
  },
});
