//! The monthly hazard ledger (隐患台账): every ticket open at any time in a local month, as CSV
//! (UTF-8 with BOM, so Excel opens it right), XLSX (rust_xlsxwriter) or JSON. Column headers
//! are Chinese by default, English with `lang = en`. Used by the API and
//! `campusguard tickets export`.

use serde::{Deserialize, Serialize};

use super::model::{Lang, Ticket};
use super::time::{format_local, month_range, parse_month};
use super::{TicketError, TicketsConfig};

/// The ledger's columns. Location is a place (building and room), the device apart; the
/// "five in place" of a hazard (隐患整改五落实: 责任、措施、资金、时限、预案) are the responsible
/// unit and person, measures, funding, deadline and contingency plan.
pub const COLUMNS: usize = 20;

pub const HEADERS_ZH: [&str; COLUMNS] = [
    "编号",
    "学校",
    "位置",
    "设备",
    "来源",
    "隐患描述",
    "类别",
    "等级",
    "发现时间",
    "责任单位",
    "责任人",
    "整改措施",
    "整改资金",
    "整改时限",
    "应急预案",
    "状态",
    "整改完成时间",
    "验收人",
    "销号时间",
    "是否督办",
];

pub const HEADERS_EN: [&str; COLUMNS] = [
    "Number",
    "School",
    "Location",
    "Device",
    "Source",
    "Description",
    "Category",
    "Grade",
    "Found at",
    "Responsible unit",
    "Responsible person",
    "Measures",
    "Funding",
    "Deadline",
    "Contingency plan",
    "State",
    "Rectified at",
    "Verifier",
    "Closed at",
    "Supervised",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Format::Csv),
            "xlsx" => Some(Format::Xlsx),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Json => "application/json",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Json => "json",
        }
    }
}

/// One ledger row, as text, in column order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerRow {
    pub number: String,
    pub school: String,
    pub location: String,
    pub device: String,
    pub source: String,
    pub description: String,
    pub category: String,
    pub grade: String,
    pub found_at: String,
    pub responsible_unit: String,
    pub responsible_person: String,
    pub measures: String,
    pub funding: String,
    pub deadline: String,
    pub contingency_plan: String,
    pub state: String,
    pub rectified_at: String,
    pub verifier: String,
    pub closed_at: String,
    pub supervised: String,
}

impl LedgerRow {
    pub fn cells(&self) -> [&str; COLUMNS] {
        [
            &self.number,
            &self.school,
            &self.location,
            &self.device,
            &self.source,
            &self.description,
            &self.category,
            &self.grade,
            &self.found_at,
            &self.responsible_unit,
            &self.responsible_person,
            &self.measures,
            &self.funding,
            &self.deadline,
            &self.contingency_plan,
            &self.state,
            &self.rectified_at,
            &self.verifier,
            &self.closed_at,
            &self.supervised,
        ]
    }
}

/// The ledger row of a ticket; `school_name` is how the school is shown.
pub fn row(t: &Ticket, lang: Lang, offset_ms: i64, school_name: &str) -> LedgerRow {
    let time = |v: Option<i64>| v.map(|ms| format_local(ms, offset_ms)).unwrap_or_default();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let source = match (&t.sensor, &t.inspector) {
        (Some(_), _) => match &t.alarm_class {
            Some(class) => format!("{} {class}", t.source.label(lang)),
            None => t.source.label(lang).to_string(),
        },
        (None, Some(who)) => format!("{} {who}", t.source.label(lang)),
        (None, None) => t.source.label(lang).to_string(),
    };
    let yes_no = match (t.supervised, lang) {
        (true, Lang::Zh) => "是",
        (false, Lang::Zh) => "否",
        (true, Lang::En) => "yes",
        (false, Lang::En) => "no",
    };
    LedgerRow {
        number: t.id.clone(),
        school: school_name.to_string(),
        location: t.location.clone(),
        device: text(&t.device),
        source,
        description: t.description.clone(),
        category: t.category.label(lang).to_string(),
        grade: t.grade.label(lang).to_string(),
        found_at: time(Some(t.found_at)),
        responsible_unit: text(&t.responsible_unit),
        responsible_person: text(&t.responsible_person),
        measures: text(&t.measures),
        funding: text(&t.funding),
        deadline: time(t.deadline_at),
        contingency_plan: text(&t.contingency_plan),
        state: t.state.label(lang).to_string(),
        rectified_at: time(t.rectified_at),
        verifier: text(&t.verifier),
        closed_at: time(t.closed_at),
        supervised: yes_no.to_string(),
    }
}

/// [start, end) in Unix ms of `YYYY-MM` in the configured local offset.
pub fn month_bounds(month: &str, config: &TicketsConfig) -> Result<(i64, i64), TicketError> {
    let (y, m) = parse_month(month)
        .ok_or_else(|| TicketError::Invalid(format!("month `{month}`: expected YYYY-MM")))?;
    Ok(month_range(y, m, config.offset_ms()))
}

/// Whether a spreadsheet would read `cell` as a formula (or a formula's start): `=`, `+`, `-`,
/// `@`, a tab or a carriage return first. Descriptions come from whoever files a ticket, and a
/// ledger opened in Excel or WPS must not run `=HYPERLINK(…)` or `=cmd|…` from one.
pub fn looks_like_formula(cell: &str) -> bool {
    cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A CSV cell as text: one that looks like a formula gets a leading `'`, which spreadsheets
/// take as "this is text" and do not show.
fn csv_text(cell: &str) -> std::borrow::Cow<'_, str> {
    if looks_like_formula(cell) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// Renders the ledger rows in `format`.
pub fn render(rows: &[LedgerRow], format: Format, lang: Lang) -> Result<Vec<u8>, TicketError> {
    let headers = match lang {
        Lang::Zh => HEADERS_ZH,
        Lang::En => HEADERS_EN,
    };
    match format {
        Format::Csv => {
            let mut out = Vec::with_capacity(64 + rows.len() * 256);
            out.extend_from_slice("\u{FEFF}".as_bytes());
            let mut writer = csv::Writer::from_writer(out);
            let failed = |e: csv::Error| TicketError::Io(format!("csv: {e}"));
            writer.write_record(headers).map_err(failed)?;
            for r in rows {
                let cells = r.cells().map(csv_text);
                writer
                    .write_record(cells.iter().map(|c| c.as_bytes()))
                    .map_err(failed)?;
            }
            writer
                .into_inner()
                .map_err(|e| TicketError::Io(format!("csv: {e}")))
        }
        Format::Json => serde_json::to_vec_pretty(rows).map_err(|e| TicketError::Io(e.to_string())),
        Format::Xlsx => {
            use rust_xlsxwriter::{Format as CellFormat, Workbook};
            let failed = |e: rust_xlsxwriter::XlsxError| TicketError::Io(format!("xlsx: {e}"));
            let mut workbook = Workbook::new();
            let sheet = workbook.add_worksheet();
            sheet
                .set_name(match lang {
                    Lang::Zh => "隐患台账",
                    Lang::En => "Hazard ledger",
                })
                .map_err(failed)?;
            let bold = CellFormat::new().set_bold();
            // Every cell is written as a string, never as a formula; one that starts like a
            // formula also gets Excel's quote prefix, so editing it keeps it text.
            let text = CellFormat::new().set_quote_prefix();
            for (col, h) in headers.iter().enumerate() {
                let col = u16::try_from(col).unwrap_or(u16::MAX);
                sheet
                    .write_string_with_format(0, col, *h, &bold)
                    .map_err(failed)?;
                sheet.set_column_width(col, 16).map_err(failed)?;
            }
            for (i, r) in rows.iter().enumerate() {
                let line = u32::try_from(i + 1)
                    .map_err(|_| TicketError::Invalid("too many rows for one sheet".into()))?;
                for (col, cell) in r.cells().iter().enumerate() {
                    let col = u16::try_from(col).unwrap_or(u16::MAX);
                    if looks_like_formula(cell) {
                        sheet
                            .write_string_with_format(line, col, *cell, &text)
                            .map_err(failed)?;
                    } else {
                        sheet.write_string(line, col, *cell).map_err(failed)?;
                    }
                }
            }
            sheet.set_freeze_panes(1, 0).map_err(failed)?;
            workbook.save_to_buffer().map_err(failed)
        }
    }
}

impl super::Tickets {
    /// The ledger of `month` (`YYYY-MM`) for the schools in `scope` (`None` = all).
    pub async fn ledger(
        &self,
        month: &str,
        scope: Option<&[String]>,
        lang: Lang,
    ) -> Result<Vec<LedgerRow>, TicketError> {
        let (from, to) = month_bounds(month, &self.config)?;
        let tickets = self.store.ledger(from, to, scope).await?;
        let offset = self.config.offset_ms();
        let schools = &self.config.schools;
        Ok(tickets
            .iter()
            .map(|t| row(t, lang, offset, schools.name_of(&t.school)))
            .collect())
    }

    pub async fn export(
        &self,
        month: &str,
        format: Format,
        lang: Lang,
        scope: Option<&[String]>,
    ) -> Result<Vec<u8>, TicketError> {
        let rows = self.ledger(month, scope, lang).await?;
        render(&rows, format, lang)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> LedgerRow {
        LedgerRow {
            number: "XHSY-202611-0001".into(),
            school: "xhsy".into(),
            location: "A栋, 101".into(),
            device: String::new(),
            source: "排查 张三".into(),
            description: "灭火器\"过期\"\n两具".into(),
            category: "消防安全".into(),
            grade: "一般".into(),
            found_at: "2026-11-02 09:00".into(),
            responsible_unit: "办公室".into(),
            responsible_person: "李四".into(),
            measures: "更换".into(),
            funding: "学校公用经费 800 元".into(),
            deadline: "2026-11-09 09:00".into(),
            contingency_plan: "临时配备灭火器".into(),
            state: "整改中".into(),
            rectified_at: String::new(),
            verifier: String::new(),
            closed_at: String::new(),
            supervised: "否".into(),
        }
    }

    #[test]
    fn csv_starts_with_a_bom_and_quotes_commas_quotes_and_newlines() {
        let bytes = render(&[sample()], Format::Csv, Lang::Zh).unwrap();
        assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]));
        let mut reader = csv::Reader::from_reader(&bytes[3..]);
        let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(headers, HEADERS_ZH);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][5], "灭火器\"过期\"\n两具");
        assert_eq!(&rows[0][12], "学校公用经费 800 元");
        assert_eq!(&rows[0][14], "临时配备灭火器");
    }

    #[test]
    fn cells_that_start_like_a_formula_come_back_as_text_from_csv_and_xlsx() {
        use calamine::{Data, Reader};
        let formulas = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ];
        let rows: Vec<LedgerRow> = formulas
            .iter()
            .map(|f| LedgerRow {
                description: f.to_string(),
                measures: format!("更换 {f}"),
                ..sample()
            })
            .collect();
        let csv = render(&rows, Format::Csv, Lang::Zh).unwrap();
        let mut reader = csv::Reader::from_reader(&csv[3..]);
        let got: Vec<String> = reader
            .records()
            .map(|r| r.unwrap()[5].to_string())
            .collect();
        let want: Vec<String> = formulas.iter().map(|f| format!("'{f}")).collect();
        assert_eq!(got, want);
        // Only the first character matters: text with a `=` later is left alone.
        let mut reader = csv::Reader::from_reader(&csv[3..]);
        assert!(reader
            .records()
            .all(|r| r.unwrap()[11].starts_with("更换 ")));

        let xlsx = render(&rows, Format::Xlsx, Lang::Zh).unwrap();
        let mut book = calamine::Xlsx::new(std::io::Cursor::new(xlsx)).unwrap();
        let sheet = book.worksheet_range("隐患台账").unwrap();
        for (i, f) in formulas.iter().enumerate() {
            assert_eq!(
                sheet.get((i + 1, 5)),
                Some(&Data::String(f.to_string())),
                "row {i}"
            );
        }
        let formulas_in_sheet = book.worksheet_formula("隐患台账").unwrap();
        assert!(
            formulas_in_sheet.used_cells().all(|(_, _, f)| f.is_empty()),
            "a cell was written as a formula"
        );
    }

    #[test]
    fn xlsx_renders_to_a_zip_container() {
        let bytes = render(&[sample()], Format::Xlsx, Lang::En).unwrap();
        assert!(bytes.starts_with(b"PK"));
    }
}
