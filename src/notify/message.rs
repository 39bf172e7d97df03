//! What a notification says, in Chinese, one line a fact: the [`Message`] every channel formats
//! its own way (plain text, DingTalk/WeCom markdown, a Feishu rich-text post, a mail, the
//! webhook's JSON). Built when a step becomes due ([`Renderer::alarm`]), stored with the
//! delivery, so what is sent after an outage says what was due then.
//!
//! Names come from the configuration and the devices' own announcements ([`Directory`]): the
//! school's display name ([`Renderer::school_name`], one lookup), building and room, the
//! device's name and its profile's label, the rule's label and the point's unit. Times are local
//! (`timezone_offset_hours`; 8 is 北京时间).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::alarms::{AlarmEvent, AlarmState};
use crate::model::{AlarmClass, DeviceInfo, DeviceKey, Severity, Value};
use crate::rules::ProfileSet;

/// One notification, ready for any channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `alarm`, `cleared`, `summary`, `ticket`, `digest` or `test`.
    pub kind: String,
    /// The step in words, for the journal (`第1步`, `第2步·第3次重复`, `恢复通知`).
    pub step: String,
    /// First line, e.g. `【火警】星海实验学校 · 感温火警`.
    pub title: String,
    /// One fact a line.
    pub lines: Vec<String>,
    /// The console page of the subject.
    pub link: Option<String>,
    /// The whole message as one line, for summaries that stand for many messages.
    pub line: String,
    /// The alarm transitions this message is about (the webhook sends them as they are).
    #[serde(default)]
    pub events: Vec<AlarmEvent>,
    /// The ticket (or digest) this message is about, as JSON, for the webhook.
    #[serde(default)]
    pub subject: Option<serde_json::Value>,
}

impl Message {
    /// Plain text: title, the facts, the link.
    pub fn text(&self) -> String {
        let mut out = self.title.clone();
        for line in &self.lines {
            out.push('\n');
            out.push_str(line);
        }
        if let Some(link) = &self.link {
            out.push('\n');
            out.push_str(&format!("{}：{link}", link_label(&self.kind)));
        }
        out
    }

    /// Markdown for DingTalk: a paragraph per fact (DingTalk joins single newlines).
    pub fn dingtalk_markdown(&self) -> String {
        let mut out = format!("#### {}\n\n", md_escape(&self.title));
        for line in &self.lines {
            out.push_str(&md_escape(line));
            out.push_str("\n\n");
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("[{}]({link})", link_label(&self.kind)));
        }
        out
    }

    /// Markdown for WeCom: bold title, a line per fact.
    pub fn wecom_markdown(&self) -> String {
        let mut out = format!("**{}**", md_escape(&self.title));
        for line in &self.lines {
            out.push('\n');
            out.push_str(&md_escape(line));
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("\n[{}]({link})", link_label(&self.kind)));
        }
        out
    }

    /// The ids of the alarms this message names.
    pub fn alarm_ids(&self) -> Vec<u64> {
        self.events.iter().map(|e| e.alarm.id).collect()
    }
}

fn link_label(kind: &str) -> &'static str {
    match kind {
        "alarm" | "summary" => "查看并确认",
        _ => "查看详情",
    }
}

/// Markdown would read `*`, `_`, `[` … in a device name as markup; a backslash keeps them text.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '_' | '[' | ']' | '`' | '#' | '<' | '>') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    const MARK: &str = "…（已截断）";
    let mut end = max.saturating_sub(MARK.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &s[..end])
}

/// What the gateway knows about devices: configured ones and those that announced themselves
/// (refreshed from the local store when a message names a device it does not know yet).
#[derive(Debug, Default)]
pub struct Directory {
    devices: RwLock<HashMap<DeviceKey, DeviceInfo>>,
}

impl Directory {
    pub fn new(devices: impl IntoIterator<Item = (DeviceKey, DeviceInfo)>) -> Self {
        Self {
            devices: RwLock::new(devices.into_iter().collect()),
        }
    }

    pub fn get(&self, key: &DeviceKey) -> Option<DeviceInfo> {
        self.devices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub fn knows(&self, key: &DeviceKey) -> bool {
        self.devices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(key)
    }

    /// Adds announced devices; configured ones (already here) win.
    pub fn add_announced(&self, devices: impl IntoIterator<Item = (DeviceKey, DeviceInfo)>) {
        let mut map = self
            .devices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, info) in devices {
            map.entry(key).or_insert(info);
        }
    }
}

/// Builds messages.
#[derive(Clone)]
pub struct Renderer {
    pub console_url: Option<String>,
    pub offset_ms: i64,
    pub profiles: Arc<ProfileSet>,
    pub directory: Arc<Directory>,
}

impl Renderer {
    /// The display name of a school. The configuration has no list of schools yet, so this is
    /// the school id; when one exists, this is the one place to look the name up.
    pub fn school_name(&self, school: &str) -> String {
        school.to_string()
    }

    /// `<console_url>#/alarms/<id>`.
    pub fn alarm_link(&self, id: u64) -> Option<String> {
        self.console_link(&format!("alarms/{id}"))
    }

    /// `<console_url>#/<route>`.
    pub fn console_link(&self, route: &str) -> Option<String> {
        let base = self.console_url.as_ref()?;
        let base = base.split('#').next().unwrap_or(base);
        let sep = if base.ends_with('/') { "" } else { "/" };
        Some(format!("{base}{sep}#/{route}"))
    }

    /// `2026-12-06 11:42:22（北京时间）`.
    pub fn time(&self, at_ms: i64) -> String {
        format!("{}（{}）", local_time(at_ms, self.offset_ms), self.zone())
    }

    fn zone(&self) -> String {
        match self.offset_ms / 3_600_000 {
            8 => "北京时间".to_string(),
            0 => "UTC".to_string(),
            h => format!("UTC{h:+}"),
        }
    }

    /// The message of an alarm step (`kind` `alarm`) or of its clearing (`cleared`).
    pub fn alarm(&self, event: &AlarmEvent, kind: &str, step: &str, drill_marked: bool) -> Message {
        let alarm = &event.alarm;
        let device = alarm.sensor.device_key();
        let info = self.directory.get(&device).unwrap_or_default();
        let profile = info
            .profile
            .as_deref()
            .and_then(|p| self.profiles.profile(p));
        let rule_label = profile
            .and_then(|p| p.rules.iter().find(|r| *r.id == *alarm.rule))
            .and_then(|r| r.label.as_deref())
            // Profile labels read `定温 / fixed temperature`: the Chinese half.
            .map(|l| l.split(" / ").next().unwrap_or(l).trim().to_string())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| alarm.rule.to_string());
        let unit = profile
            .and_then(|p| p.points.get(&*alarm.point))
            .and_then(|p| p.unit.clone())
            .unwrap_or_default();
        let school = self.school_name(&alarm.school);
        let mut lead = String::new();
        if drill_marked && alarm.drill {
            lead.push_str("【演练】");
        }
        if kind == "cleared" {
            lead.push_str("【已恢复】");
        }
        lead.push_str(&format!("【{}】", class_label(alarm.class, alarm.severity)));
        let title = format!("{lead}{school} · {rule_label}");
        let place: Vec<&str> = [info.building.as_deref(), info.room.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let place = place.join(" ");
        let device_name = info
            .name
            .clone()
            .or_else(|| profile.map(|p| p.label.clone()).filter(|l| !l.is_empty()))
            .map(|n| format!("{n} {}", alarm.device))
            .unwrap_or_else(|| alarm.device.to_string());
        let mut lines = vec![format!("学校：{school}")];
        if !place.is_empty() {
            lines.push(format!("位置：{place}"));
        }
        lines.push(format!("设备：{device_name}（{}）", alarm.point));
        lines.push(format!("报警：{}", alarm.message));
        if let Some(value) = value_text(alarm.value, &unit) {
            match alarm.threshold {
                Some(t) => lines.push(format!("数值：{value}（阈值 {}{unit}）", number(t))),
                None => lines.push(format!("数值：{value}")),
            }
        }
        lines.push(format!("时间：{}", self.time(alarm.raised_at)));
        if kind == "cleared" {
            lines.push(format!(
                "恢复：{}",
                self.time(alarm.cleared_at.unwrap_or(event.at))
            ));
        }
        lines.push(format!("状态：{}", state_label(alarm.state)));
        lines.push(format!("通知：{step}"));
        let mut line_parts = vec![format!("{lead}{school}")];
        if !place.is_empty() {
            line_parts.push(place.clone());
        }
        line_parts.push(device_name);
        line_parts.push(rule_label);
        line_parts.push(local_time(alarm.raised_at, self.offset_ms));
        line_parts.push(state_label(alarm.state).to_string());
        line_parts.push(format!("#{}", alarm.id));
        Message {
            kind: kind.to_string(),
            step: step.to_string(),
            title,
            lines,
            link: self.alarm_link(alarm.id),
            line: line_parts.join(" · "),
            events: vec![event.clone()],
            subject: None,
        }
    }

    /// One message standing for many (a flood beyond the channel's rate, or a digest): names
    /// every one of them, a line each.
    pub fn summary(&self, parts: &[&Message], digest: bool) -> Message {
        let alarms = parts.iter().filter(|m| !m.events.is_empty()).count();
        let title = if digest {
            format!("【报警汇总】{} 条（定时汇总）", parts.len())
        } else if alarms == parts.len() {
            format!("【报警汇总】{} 条报警", parts.len())
        } else {
            format!("【通知汇总】{} 条", parts.len())
        };
        let lines: Vec<String> = parts.iter().map(|m| m.line.clone()).collect();
        Message {
            kind: "summary".into(),
            step: if digest { "汇总" } else { "合并" }.into(),
            line: title.clone(),
            title,
            lines,
            link: self.console_link("control"),
            events: parts
                .iter()
                .flat_map(|m| m.events.iter().cloned())
                .collect(),
            subject: None,
        }
    }

    /// `campusguard notify test`.
    pub fn test(&self, channel: &str, now_ms: i64) -> Message {
        let title = "【测试】campusguard 通知测试".to_string();
        Message {
            kind: "test".into(),
            step: "测试".into(),
            line: title.clone(),
            title,
            lines: vec![
                format!("通道：{channel}"),
                format!("时间：{}", self.time(now_ms)),
                "收到这条消息说明通道配置正确。".into(),
            ],
            link: self.console_link("control"),
            events: Vec::new(),
            subject: None,
        }
    }
}

/// `【火警】`, `【气体预警】` …
pub fn class_label(class: AlarmClass, severity: Severity) -> &'static str {
    match (class, severity) {
        (AlarmClass::Fire, Severity::Warning) => "火警预警",
        (AlarmClass::Fire, Severity::Alarm) => "火警",
        (AlarmClass::Gas, Severity::Warning) => "气体预警",
        (AlarmClass::Gas, Severity::Alarm) => "气体报警",
        (AlarmClass::Supervisory, Severity::Warning) => "监管预警",
        (AlarmClass::Supervisory, Severity::Alarm) => "监管报警",
        (AlarmClass::Fault, _) => "故障",
    }
}

pub fn state_label(state: AlarmState) -> &'static str {
    match state {
        AlarmState::ActiveUnacked => "未确认",
        AlarmState::ActiveAcked => "已确认",
        AlarmState::ClearedUnacked => "已恢复，未确认",
        AlarmState::Cleared => "已清除",
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn value_text(value: Option<Value>, unit: &str) -> Option<String> {
    match value? {
        Value::Number(n) => Some(format!("{}{unit}", number(n))),
        Value::Bool(b) => Some(if b { "是" } else { "否" }.to_string()),
    }
}

/// `YYYY-MM-DD HH:MM:SS` of Unix ms in a fixed offset.
pub fn local_time(at_ms: i64, offset_ms: i64) -> String {
    const DAY_MS: i64 = 86_400_000;
    let local = at_ms + offset_ms;
    let (y, m, d) = crate::tickets::time::civil_from_days(local.div_euclid(DAY_MS));
    let secs = local.rem_euclid(DAY_MS) / 1000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::AlarmBook;
    use crate::model::{ConditionChange, SensorId};

    fn renderer() -> Renderer {
        let profiles = ProfileSet::builtin();
        let directory = Directory::new([(
            DeviceKey::new("xhsy", "heat-a201"),
            DeviceInfo {
                profile: Some("heat_detector".into()),
                building: Some("教学楼A".into()),
                room: Some("201教室".into()),
                name: None,
            },
        )]);
        Renderer {
            console_url: Some("https://campusguard.school.example/".into()),
            offset_ms: 8 * 3_600_000,
            profiles: Arc::new(profiles),
            directory: Arc::new(directory),
        }
    }

    fn fire(at: i64) -> AlarmEvent {
        let change = ConditionChange {
            sensor: SensorId::new("xhsy", "heat-a201", "temp_c"),
            rule: "heat_fixed".into(),
            class: AlarmClass::Fire,
            severity: Some(Severity::Alarm),
            value: Some(Value::Number(61.5)),
            threshold: Some(57.0),
            reading_ts_ms: at,
            message: "temp_c 61.5 ≥ 57".into(),
        };
        AlarmBook::restore(Vec::new(), 0)
            .apply(&change, at, false)
            .expect("raised")
    }

    #[test]
    fn an_alarm_message_says_one_fact_a_line_in_chinese_with_local_time_and_the_link() {
        // 2026-12-06 03:42:22 UTC = 11:42:22 in Beijing.
        let at = 1_796_528_542_000;
        let m = renderer().alarm(&fire(at), "alarm", "第1步", false);
        assert_eq!(m.title, "【火警】xhsy · 定温");
        let text = m.text();
        for expected in [
            "学校：xhsy",
            "位置：教学楼A 201教室",
            "（temp_c）",
            "报警：temp_c 61.5 ≥ 57",
            "数值：61.5°C（阈值 57°C）",
            "时间：2026-12-06 11:42:22（北京时间）",
            "状态：未确认",
            "通知：第1步",
            "查看并确认：https://campusguard.school.example/#/alarms/1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(m.alarm_ids(), vec![1]);
        assert!(m.line.contains("#1"), "{}", m.line);
        assert!(m.dingtalk_markdown().starts_with("#### 【火警】"));
        assert!(m
            .wecom_markdown()
            .ends_with("[查看并确认](https://campusguard.school.example/#/alarms/1)"));
    }

    #[test]
    fn a_marked_drill_leads_with_its_mark_and_a_clearing_says_so() {
        let mut event = fire(0);
        event.alarm.drill = true;
        event.alarm.state = AlarmState::ClearedUnacked;
        event.alarm.cleared_at = Some(60_000);
        let r = renderer();
        let m = r.alarm(&event, "cleared", "恢复通知", true);
        assert!(
            m.title.starts_with("【演练】【已恢复】【火警】"),
            "{}",
            m.title
        );
        assert!(m.text().contains("状态：已恢复，未确认"));
        assert!(m.text().contains("恢复：1970-01-01 08:01:00（北京时间）"));
        let unmarked = r.alarm(&event, "alarm", "第1步", false);
        assert!(!unmarked.title.contains("演练"));
    }

    #[test]
    fn a_summary_names_every_message_it_stands_for() {
        let r = renderer();
        let parts: Vec<Message> = (0..3)
            .map(|i| {
                let mut e = fire(i);
                e.alarm.id = 10 + i as u64;
                r.alarm(&e, "alarm", "第1步", false)
            })
            .collect();
        let refs: Vec<&Message> = parts.iter().collect();
        let s = r.summary(&refs, false);
        assert_eq!(s.title, "【报警汇总】3 条报警");
        assert_eq!(s.alarm_ids(), vec![10, 11, 12]);
        for id in ["#10", "#11", "#12"] {
            assert!(s.text().contains(id));
        }
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let s = "火".repeat(100);
        let cut = truncate_bytes(&s, 50);
        assert!(cut.len() <= 50, "{}", cut.len());
        assert!(cut.ends_with("（已截断）"));
        assert_eq!(truncate_bytes("short", 50), "short");
    }
}
