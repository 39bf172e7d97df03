//! The alarm history as a spreadsheet: one row per alarm, Chinese headers by default (English
//! with `lang=en`), as CSV (UTF-8 with BOM, so Excel and WPS open it right) written page by
//! page, or XLSX written row by row in constant memory (rust_xlsxwriter keeps only the current
//! row and spills the rest to a temporary file).
//!
//! Every cell is text; one that starts like a formula (`=`, `+`, `-`, `@`, …) is kept as text,
//! since a message or a comment can come from a device or an operator.

use std::io::Write;

use crate::alarms::{Alarm, AlarmState};
use crate::model::{AlarmClass, Severity};
use crate::tickets::export::looks_like_formula;
use crate::tickets::time::civil_from_days;

pub const COLUMNS: usize = 18;

pub const HEADERS_ZH: [&str; COLUMNS] = [
    "编号",
    "报警时间",
    "学校",
    "楼栋",
    "设备",
    "测点",
    "规则",
    "类别",
    "级别",
    "状态",
    "报警内容",
    "数值",
    "阈值",
    "确认人",
    "确认时间",
    "确认说明",
    "恢复时间",
    "演练",
];

pub const HEADERS_EN: [&str; COLUMNS] = [
    "ID",
    "Raised at",
    "School",
    "Building",
    "Device",
    "Point",
    "Rule",
    "Class",
    "Severity",
    "State",
    "Message",
    "Value",
    "Threshold",
    "Acknowledged by",
    "Acknowledged at",
    "Acknowledgement comment",
    "Cleared at",
    "Drill",
];

/// A sheet holds 1,048,576 rows: the header and this many alarms.
pub const MAX_XLSX_ROWS: u32 = 1_048_575;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zh" | "zh-CN" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn headers(self) -> [&'static str; COLUMNS] {
        match self {
            Lang::Zh => HEADERS_ZH,
            Lang::En => HEADERS_EN,
        }
    }
}

fn class_label(class: AlarmClass, lang: Lang) -> &'static str {
    match (class, lang) {
        (AlarmClass::Fire, Lang::Zh) => "火警",
        (AlarmClass::Gas, Lang::Zh) => "燃气",
        (AlarmClass::Supervisory, Lang::Zh) => "监管",
        (AlarmClass::Fault, Lang::Zh) => "故障",
        (c, Lang::En) => c.as_str(),
    }
}

fn severity_label(severity: Severity, lang: Lang) -> &'static str {
    match (severity, lang) {
        (Severity::Warning, Lang::Zh) => "预警",
        (Severity::Alarm, Lang::Zh) => "报警",
        (s, Lang::En) => s.as_str(),
    }
}

fn state_label(state: AlarmState, lang: Lang) -> &'static str {
    match (state, lang) {
        (AlarmState::ActiveUnacked, Lang::Zh) => "报警未确认",
        (AlarmState::ActiveAcked, Lang::Zh) => "报警已确认",
        (AlarmState::ClearedUnacked, Lang::Zh) => "已恢复未确认",
        (AlarmState::Cleared, Lang::Zh) => "已恢复",
        (s, Lang::En) => s.as_str(),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in local time (`offset_ms` east of UTC).
pub fn format_time(at: i64, offset_ms: i64) -> String {
    const DAY_MS: i64 = 86_400_000;
    let local = at.saturating_add(offset_ms);
    let (y, m, d) = civil_from_days(local.div_euclid(DAY_MS));
    let secs = local.rem_euclid(DAY_MS) / 1000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// One alarm's cells, in column order.
pub fn cells(
    alarm: &Alarm,
    building: Option<&str>,
    lang: Lang,
    offset_ms: i64,
) -> [String; COLUMNS] {
    let time = |t: Option<i64>| t.map(|t| format_time(t, offset_ms)).unwrap_or_default();
    let drill = match (alarm.drill, lang) {
        (false, _) => "",
        (true, Lang::Zh) => "是",
        (true, Lang::En) => "yes",
    };
    [
        alarm.id.to_string(),
        time(Some(alarm.raised_at)),
        alarm.school.to_string(),
        building.unwrap_or_default().to_string(),
        alarm.device.to_string(),
        alarm.point.to_string(),
        alarm.rule.to_string(),
        class_label(alarm.class, lang).to_string(),
        severity_label(alarm.severity, lang).to_string(),
        state_label(alarm.state, lang).to_string(),
        alarm.message.clone(),
        alarm.value.map(|v| v.to_string()).unwrap_or_default(),
        alarm.threshold.map(|v| v.to_string()).unwrap_or_default(),
        alarm.acked_by.clone().unwrap_or_default(),
        time(alarm.acked_at),
        alarm.ack_comment.clone().unwrap_or_default(),
        time(alarm.cleared_at),
        drill.to_string(),
    ]
}

/// The CSV's first bytes: the BOM and the header line.
pub fn csv_head(lang: Lang) -> Result<Vec<u8>, csv::Error> {
    let mut out = "\u{FEFF}".as_bytes().to_vec();
    let mut writer = csv::Writer::from_writer(&mut out);
    writer.write_record(lang.headers())?;
    writer.flush()?;
    drop(writer);
    Ok(out)
}

/// CSV lines of `rows` (no header).
pub fn csv_lines<'a>(
    rows: impl IntoIterator<Item = [String; COLUMNS]> + 'a,
) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.write_record(row.iter().map(|cell| {
            // A leading `'` makes a spreadsheet read the cell as text (and is not shown).
            if looks_like_formula(cell) {
                format!("'{cell}")
            } else {
                cell.clone()
            }
        }))?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

/// An XLSX sheet written row by row in constant memory.
pub struct XlsxWriter {
    workbook: rust_xlsxwriter::Workbook,
    next_row: u32,
    text: rust_xlsxwriter::Format,
}

impl XlsxWriter {
    /// A workbook with one sheet and its header row; temporary row data goes to `temp_dir`.
    pub fn new(lang: Lang, temp_dir: &std::path::Path) -> Result<Self, rust_xlsxwriter::XlsxError> {
        use rust_xlsxwriter::{Format, Workbook};
        let mut workbook = Workbook::new();
        workbook.set_tempdir(temp_dir)?;
        let sheet = workbook.add_worksheet_with_constant_memory()?;
        sheet.set_name(match lang {
            Lang::Zh => "报警记录",
            Lang::En => "Alarm history",
        })?;
        let bold = Format::new().set_bold();
        for (col, header) in lang.headers().iter().enumerate() {
            let col = u16::try_from(col).unwrap_or(u16::MAX);
            sheet.set_column_width(col, if col == 10 { 40 } else { 16 })?;
            sheet.write_string_with_format(0, col, *header, &bold)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        Ok(Self {
            workbook,
            next_row: 1,
            text: Format::new().set_quote_prefix(),
        })
    }

    /// Appends one alarm; false once the sheet is full (the row was not written).
    pub fn push(&mut self, cells: &[String; COLUMNS]) -> Result<bool, rust_xlsxwriter::XlsxError> {
        if self.next_row > MAX_XLSX_ROWS {
            return Ok(false);
        }
        let sheet = self.workbook.worksheet_from_index(0)?;
        for (col, cell) in cells.iter().enumerate() {
            let col = u16::try_from(col).unwrap_or(u16::MAX);
            if cell.is_empty() {
                continue;
            }
            if looks_like_formula(cell) {
                sheet.write_string_with_format(self.next_row, col, cell, &self.text)?;
            } else {
                sheet.write_string(self.next_row, col, cell)?;
            }
        }
        self.next_row += 1;
        Ok(true)
    }

    /// Writes the finished workbook to `out`.
    pub fn finish<W: Write + Send>(mut self, out: W) -> Result<(), rust_xlsxwriter::XlsxError> {
        self.workbook.save_to_writer(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_are_local_with_seconds() {
        // 2026-12-06 00:00:00 UTC is 08:00:00 in UTC+8.
        assert_eq!(
            format_time(1_796_515_200_000 + 1_000, 8 * 3_600_000),
            "2026-12-06 08:00:01"
        );
    }

    #[test]
    fn a_formula_like_cell_stays_text_in_csv() {
        let mut row: [String; COLUMNS] = Default::default();
        row[10] = "=HYPERLINK(\"x\")".into();
        row[0] = "1".into();
        let csv = csv_lines([row]).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert!(text.contains("'=HYPERLINK"), "{text}");
        let head = csv_head(Lang::Zh).unwrap();
        assert!(String::from_utf8(head)
            .unwrap()
            .starts_with("\u{FEFF}编号,报警时间"));
    }
}
