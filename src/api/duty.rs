//! The duty log (值班记录): operators sign on in a control room (`POST /api/v1/duty/shifts`),
//! hand over with notes (`POST /api/v1/duty/shifts/{id}/handover`); anyone who may read sees
//! who is on duty now with the last handover notes (`GET /api/v1/duty/shifts`) and the log of a
//! local day (`GET /api/v1/duty/log`, also as CSV or XLSX with Chinese headers): the shifts
//! and, filled in from the alarm journal and the drills (read on the read-only pool), what
//! happened in the room's schools and who was on duty then.
//!
//! Rooms are `[[duty.rooms]]`; a school-scoped caller sees the rooms watching one of their
//! schools, and in a room's log only their schools' alarms. Signing on and off needs an
//! operator or an admin; a handover is the shift's own person's (an admin may sign off anyone's
//! shift, e.g. one left open). More people than `staff_per_shift` may sign on (a handover
//! overlaps two shifts): the answer says `staffing: over`, the console shows it.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::area::Routes;
use super::error::ApiError;
use super::extract::{bounded_text, optional_body, Reader};
use super::state::AppState;
use crate::access::{Principal, Role};
use crate::alarms::export::{format_time, Lang};
use crate::duty::{Duty, DutyRoom, Interval};
use crate::model::now_ms;
use crate::store::{DutyEvent, Shift};
use crate::tickets::export::looks_like_formula;
use crate::tickets::time::{days_from_civil, local_date};

/// A day's log lists at most this many journal events (a flood beyond it says `truncated`).
pub const MAX_LOG_EVENTS: u32 = 20_000;
const DAY_MS: i64 = 86_400_000;

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/v1/duty/shifts", get(now_on_duty).post(sign_on))
        .route("/api/v1/duty/shifts/{id}/handover", post(handover))
        .route("/api/v1/duty/log", get(day_log))
}

/// A caller who may sign on and off: an operator or an admin.
struct DutyStaff(Principal);

impl FromRequestParts<AppState> for DutyStaff {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let who = state.auth.principal(parts)?;
        match who.role {
            Some(Role::Operator | Role::Admin) => Ok(DutyStaff(who)),
            None => Err(ApiError::unauthorized(
                "signing on needs Authorization: Bearer <token> or a login",
            )),
            _ => Err(
                ApiError::forbidden("only an operator or an admin signs on and off duty")
                    .with_zh("只有值班员或管理员可以接班、交班"),
            ),
        }
    }
}

/// The room `name`, if it exists and `who` may see it (404 otherwise: no hint it exists).
fn visible_room<'a>(duty: &'a Duty, who: &Principal, name: &str) -> Result<&'a DutyRoom, ApiError> {
    duty.room(name)
        .filter(|room| Duty::may_see(who, room))
        .ok_or_else(|| {
            ApiError::not_found(format!("no duty room `{name}`"))
                .with_zh(format!("没有值班室“{name}”"))
        })
}

/// `short`, `full` or `over`: how many are on duty against `staff_per_shift`.
fn staffing(on: usize, room: &DutyRoom) -> &'static str {
    let planned = room.staff_per_shift as usize;
    match on.cmp(&planned) {
        std::cmp::Ordering::Less => "short",
        std::cmp::Ordering::Equal => "full",
        std::cmp::Ordering::Greater => "over",
    }
}

/// A room now: who is on duty, and the notes of the last handover.
async fn room_now(state: &AppState, room: &DutyRoom) -> Result<Value, ApiError> {
    let on = state
        .store
        .open_shifts(&room.name)
        .await
        .map_err(ApiError::internal)?;
    let last = state
        .store
        .last_handover(&room.name)
        .await
        .map_err(ApiError::internal)?;
    Ok(json!({
        "name": room.name,
        "schools": room.schools,
        "staff_per_shift": room.staff_per_shift,
        "staffing": staffing(on.len(), room),
        "on_duty": on,
        "last_handover": last,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomQuery {
    room: Option<String>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn now_on_duty(
    State(state): State<AppState>,
    Reader(who): Reader,
    query: Result<Query<RoomQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let rooms: Vec<&DutyRoom> = match q.room.as_deref() {
        Some(name) => vec![visible_room(&state.duty, &who, name)?],
        None => state
            .duty
            .rooms()
            .iter()
            .filter(|r| Duty::may_see(&who, r))
            .collect(),
    };
    let mut out = Vec::with_capacity(rooms.len());
    for room in rooms {
        out.push(room_now(&state, room).await?);
    }
    Ok(Json(json!({ "rooms": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignOnBody {
    room: String,
    /// As the record prints the person (e.g. their real name); default: the login name.
    display_name: Option<String>,
}

async fn sign_on(
    State(state): State<AppState>,
    DutyStaff(who): DutyStaff,
    body: Result<Json<SignOnBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let room = visible_room(&state.duty, &who, &body.room)?;
    let display = bounded_text("display_name", body.display_name, 64)?
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| who.name.clone());
    let shift = state
        .store
        .sign_on(&room.name, &who.name, &display, now_ms())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "{} is already on duty in `{}`",
                who.name, room.name
            ))
            .with_zh(format!("{} 已在“{}”值班", who.name, room.name))
        })?;
    state.duty.record(
        &room.name,
        shift.id,
        Interval {
            on_at: shift.on_at,
            off_at: None,
        },
    );
    let now = room_now(&state, room).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "shift": shift, "room": now })),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HandoverBody {
    /// Notes for the next shift (what is open, what to watch).
    notes: Option<String>,
}

async fn handover(
    State(state): State<AppState>,
    DutyStaff(who): DutyStaff,
    Path(id): Path<String>,
    body: Result<Json<HandoverBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("shift id must be a number, not `{id}`")))?;
    let body = optional_body(body)?;
    let notes = bounded_text("notes", body.notes, 4000)?.filter(|n| !n.trim().is_empty());
    let not_found = || ApiError::not_found(format!("shift {id} not found"));
    let shift = state
        .store
        .shift(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    let room = state
        .duty
        .room(&shift.room)
        .filter(|r| Duty::may_see(&who, r))
        .ok_or_else(not_found)?;
    if shift.user != who.name && who.role != Some(Role::Admin) {
        return Err(
            ApiError::forbidden("only the person on the shift (or an admin) signs it off")
                .with_zh("只能由本人（或管理员）交班"),
        );
    }
    let off = state
        .store
        .sign_off(id, &who.name, notes.as_deref(), now_ms())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::conflict(format!("shift {id} is already signed off"))
                .with_zh(format!("班次 {id} 已交班"))
        })?;
    state.duty.record(
        &off.room,
        off.id,
        Interval {
            on_at: off.on_at,
            off_at: off.off_at,
        },
    );
    let now = room_now(&state, room).await?;
    Ok(Json(json!({ "shift": off, "room": now })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    room: String,
    /// `YYYY-MM-DD`, a local day (`tickets.utc_offset_hours`); default today.
    date: Option<String>,
    /// `json` (default), `csv` or `xlsx`.
    format: Option<String>,
    /// Export headers and labels: `zh` (default) or `en`.
    lang: Option<String>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// Parses `YYYY-MM-DD` into (year, month, day).
pub fn parse_date(s: &str) -> Option<(i64, u32, u32)> {
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    // A day that does not exist (02-30) does not come back the same from the day count.
    let days = days_from_civil(y, m, d);
    (crate::tickets::time::civil_from_days(days) == (y, m, d)).then_some((y, m, d))
}

/// The day's log, as JSON and as the rows of the exports.
struct DayLog {
    room: DutyRoom,
    date: String,
    from: i64,
    to: i64,
    schools: Vec<String>,
    shifts: Vec<Shift>,
    events: Vec<(DutyEvent, Vec<i64>, Option<bool>)>,
    drills: Vec<crate::drills::Drill>,
    truncated: bool,
}

async fn read_log(state: &AppState, who: &Principal, q: &LogQuery) -> Result<DayLog, ApiError> {
    let room = visible_room(&state.duty, who, &q.room)?.clone();
    let offset = state.tickets.config.offset_ms();
    let (y, m, d) = match q.date.as_deref() {
        None | Some("") => local_date(now_ms(), offset),
        Some(raw) => parse_date(raw).ok_or_else(|| {
            ApiError::bad_request(format!("date must be YYYY-MM-DD, not `{raw}`"))
        })?,
    };
    let from = days_from_civil(y, m, d) * DAY_MS - offset;
    let to = from + DAY_MS;
    // Only the schools of the room the caller may see.
    let schools: Vec<String> = room
        .schools
        .iter()
        .filter(|s| who.may_see_school(s))
        .cloned()
        .collect();
    let store = &state.store;
    let shifts = store
        .shifts_between(&room.name, from, to)
        .await
        .map_err(ApiError::internal)?;
    let raw = store
        .duty_events(&schools, from, to, MAX_LOG_EVENTS)
        .await
        .map_err(ApiError::internal)?;
    let truncated = raw.len() >= MAX_LOG_EVENTS as usize;
    let events = raw
        .into_iter()
        .map(|e| {
            let on: Vec<i64> = shifts
                .iter()
                .filter(|s| {
                    Interval {
                        on_at: s.on_at,
                        off_at: s.off_at,
                    }
                    .covers(e.at)
                })
                .map(|s| s.id)
                .collect();
            // A raise is unattended when nobody was on in any room covering the school; the
            // rooms' shifts in memory answer that, this room's shifts when it is older.
            let unattended = matches!(e.transition.as_str(), "raised" | "reraised").then(|| {
                state
                    .duty
                    .unattended(&e.school, e.at)
                    .unwrap_or(on.is_empty())
            });
            (e, on, unattended)
        })
        .collect();
    let drills = store
        .duty_drills(&schools, from, to)
        .await
        .map_err(ApiError::internal)?;
    Ok(DayLog {
        room,
        date: format!("{y:04}-{m:02}-{d:02}"),
        from,
        to,
        schools,
        shifts,
        events,
        drills,
        truncated,
    })
}

async fn day_log(
    State(state): State<AppState>,
    Reader(who): Reader,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let lang = Lang::parse(q.lang.as_deref().unwrap_or("zh"))
        .ok_or_else(|| ApiError::bad_request("lang must be zh or en"))?;
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "csv" | "xlsx") {
        return Err(ApiError::bad_request(format!(
            "format must be json, csv or xlsx, not `{format}`"
        )));
    }
    let log = read_log(&state, &who, &q).await?;
    let offset = state.tickets.config.offset_ms();
    match format.as_str() {
        "csv" => csv_export(&log, lang, offset),
        "xlsx" => xlsx_export(log, lang, offset).await,
        _ => {
            let schools = &state.tickets.config.schools;
            let mut body = json_log(&log);
            if let Some(obj) = body.as_object_mut() {
                // As people read them (the printed record's header); the id when not listed.
                let names: Vec<&str> = log.schools.iter().map(|s| schools.name_of(s)).collect();
                obj.insert("school_names".into(), json!(names));
            }
            Ok(Json(body).into_response())
        }
    }
}

fn json_log(log: &DayLog) -> Value {
    let events: Vec<Value> = log
        .events
        .iter()
        .map(|(e, on, unattended)| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("shift_ids".into(), json!(on));
                if let Some(u) = unattended {
                    obj.insert("unattended".into(), json!(u));
                }
            }
            v
        })
        .collect();
    json!({
        "room": log.room.name,
        "schools": log.schools,
        "staff_per_shift": log.room.staff_per_shift,
        "date": log.date,
        "from": log.from,
        "to": log.to,
        "shifts": log.shifts,
        "events": events,
        "drills": log.drills,
        "truncated": log.truncated,
    })
}

// ---- exports -------------------------------------------------------------------------------

const LOG_COLUMNS: usize = 11;
const LOG_HEADERS_ZH: [&str; LOG_COLUMNS] = [
    "时间",
    "事项",
    "学校",
    "报警编号",
    "类别",
    "位置",
    "内容",
    "操作人",
    "说明",
    "在岗值班人员",
    "无人值守",
];
const LOG_HEADERS_EN: [&str; LOG_COLUMNS] = [
    "Time",
    "What",
    "School",
    "Alarm",
    "Class",
    "Where",
    "Details",
    "By",
    "Comment",
    "On duty",
    "Unattended",
];

fn what_label(what: &str, lang: Lang) -> String {
    let zh = match what {
        "sign_on" => "接班",
        "handover" => "交班",
        "drill_start" => "演练开始",
        "drill_end" => "演练结束",
        "raised" => "报警",
        "reraised" => "再次报警",
        "escalated" => "升级",
        "acknowledged" => "确认",
        "shelved" => "搁置",
        "unshelved" => "解除搁置",
        "reset" => "复位",
        "cleared" => "恢复",
        "action" => "联动动作",
        other => other,
    };
    match lang {
        Lang::Zh => zh.to_string(),
        Lang::En => what.replace('_', " "),
    }
}

/// What a reset said a fire alarm was (as the console's reset dialog words it).
fn disposition_label(disposition: &str, lang: Lang) -> String {
    match (disposition, lang) {
        ("real", Lang::Zh) => "真实火警".into(),
        ("false", Lang::Zh) => "误报".into(),
        ("test", Lang::Zh) => "测试".into(),
        ("real", Lang::En) => "real fire".into(),
        ("false", Lang::En) => "false alarm".into(),
        (other, _) => other.to_string(),
    }
}

fn class_label(class: &str, lang: Lang) -> String {
    match (class, lang) {
        ("fire", Lang::Zh) => "火警".into(),
        ("gas", Lang::Zh) => "燃气".into(),
        ("supervisory", Lang::Zh) => "监管".into(),
        ("fault", Lang::Zh) => "故障".into(),
        (other, _) => other.to_string(),
    }
}

/// The log as a timeline of rows (sign-ons, handovers, alarm events, drills), oldest first.
fn log_rows(log: &DayLog, lang: Lang, offset: i64) -> Vec<[String; LOG_COLUMNS]> {
    let time = |at: i64| format_time(at, offset);
    let yes = match lang {
        Lang::Zh => "是",
        Lang::En => "yes",
    };
    let names = |ids: &[i64]| {
        log.shifts
            .iter()
            .filter(|s| ids.contains(&s.id))
            .map(|s| s.display_name.clone())
            .collect::<Vec<_>>()
            .join("、")
    };
    let mut rows: Vec<(i64, [String; LOG_COLUMNS])> = Vec::new();
    for s in &log.shifts {
        if (log.from..log.to).contains(&s.on_at) {
            let mut row: [String; LOG_COLUMNS] = Default::default();
            row[0] = time(s.on_at);
            row[1] = what_label("sign_on", lang);
            row[7] = s.display_name.clone();
            rows.push((s.on_at, row));
        }
        if let Some(off) = s.off_at.filter(|off| (log.from..log.to).contains(off)) {
            let mut row: [String; LOG_COLUMNS] = Default::default();
            row[0] = time(off);
            row[1] = what_label("handover", lang);
            row[7] = s.display_name.clone();
            row[8] = s.notes.clone().unwrap_or_default();
            rows.push((off, row));
        }
    }
    for (e, on, unattended) in &log.events {
        let mut row: [String; LOG_COLUMNS] = Default::default();
        row[0] = time(e.at);
        row[1] = what_label(&e.transition, lang);
        if let Some(d) = &e.disposition {
            row[1] = format!("{}（{}）", row[1], disposition_label(d, lang));
        }
        row[2] = e.school.clone();
        row[3] = e.alarm_id.to_string();
        row[4] = class_label(&e.class, lang);
        row[5] = [e.building.clone().unwrap_or_default(), e.sensor.clone()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        row[6] = e.message.clone();
        row[7] = e.user.clone();
        row[8] = e.comment.clone().unwrap_or_default();
        row[9] = names(on);
        row[10] = if *unattended == Some(true) {
            yes.to_string()
        } else {
            String::new()
        };
        rows.push((e.at, row));
    }
    for d in &log.drills {
        let mut row: [String; LOG_COLUMNS] = Default::default();
        row[0] = time(d.started_at);
        row[1] = what_label("drill_start", lang);
        row[2] = d.school.clone();
        row[5] = d.building.clone().unwrap_or_default();
        row[6] = d.reason.clone();
        row[7] = d.started_by.clone();
        rows.push((d.started_at, row));
        if let Some(end) = d.ended_at.filter(|e| (log.from..log.to).contains(e)) {
            let mut row: [String; LOG_COLUMNS] = Default::default();
            row[0] = time(end);
            row[1] = what_label("drill_end", lang);
            row[2] = d.school.clone();
            row[5] = d.building.clone().unwrap_or_default();
            row[7] = d.ended_by.clone().unwrap_or_default();
            rows.push((end, row));
        }
    }
    // Stable: at one instant, sign-ons and handovers first, then events in journal order.
    rows.sort_by_key(|(at, _)| *at);
    rows.into_iter().map(|(_, row)| row).collect()
}

fn attachment(log: &DayLog, content_type: &str, extension: &str, body: Vec<u8>) -> Response {
    // The room name may be Chinese: the ASCII name for old clients, the UTF-8 one for the rest.
    let ascii = format!("duty-log-{}.{extension}", log.date);
    let utf8 = percent_encode(&format!(
        "值班记录-{}-{}.{extension}",
        log.room.name, log.date
    ));
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{utf8}"),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        body,
    )
        .into_response()
}

/// RFC 5987 `attr-char`s as they are, every other byte as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The CSV (UTF-8 with BOM, so Excel and WPS open it right). A day's log is bounded
/// ([`MAX_LOG_EVENTS`]), so it is written whole, not streamed.
fn csv_export(log: &DayLog, lang: Lang, offset: i64) -> Result<Response, ApiError> {
    let mut writer = csv::Writer::from_writer("\u{FEFF}".as_bytes().to_vec());
    let headers = match lang {
        Lang::Zh => LOG_HEADERS_ZH,
        Lang::En => LOG_HEADERS_EN,
    };
    writer.write_record(headers).map_err(ApiError::internal)?;
    for row in log_rows(log, lang, offset) {
        writer
            .write_record(row.iter().map(|cell| {
                // A leading `'` makes a spreadsheet read the cell as text (and is not shown).
                if looks_like_formula(cell) {
                    format!("'{cell}")
                } else {
                    cell.clone()
                }
            }))
            .map_err(ApiError::internal)?;
    }
    let body = writer
        .into_inner()
        .map_err(|e| ApiError::internal(e.into_error()))?;
    Ok(attachment(log, "text/csv; charset=utf-8", "csv", body))
}

/// The XLSX, written in a blocking task (a day's log is bounded, so in memory).
async fn xlsx_export(log: DayLog, lang: Lang, offset: i64) -> Result<Response, ApiError> {
    let rows = log_rows(&log, lang, offset);
    let title = match lang {
        Lang::Zh => format!("值班记录 {} {}", log.room.name, log.date),
        Lang::En => format!("Duty log {} {}", log.room.name, log.date),
    };
    let body = tokio::task::spawn_blocking(move || {
        use rust_xlsxwriter::{Format, Workbook};
        let mut book = Workbook::new();
        let sheet = book.add_worksheet();
        sheet.set_name(match lang {
            Lang::Zh => "值班记录",
            Lang::En => "Duty log",
        })?;
        let bold = Format::new().set_bold();
        let text = Format::new().set_quote_prefix();
        let headers = match lang {
            Lang::Zh => LOG_HEADERS_ZH,
            Lang::En => LOG_HEADERS_EN,
        };
        sheet.set_header(&title);
        for (col, header) in headers.iter().enumerate() {
            let col = u16::try_from(col).unwrap_or(u16::MAX);
            sheet.set_column_width(col, if col == 6 || col == 8 { 36 } else { 14 })?;
            sheet.write_string_with_format(0, col, *header, &bold)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        for (r, row) in rows.iter().enumerate() {
            let r = u32::try_from(r + 1).unwrap_or(u32::MAX);
            for (col, cell) in row.iter().enumerate() {
                let col = u16::try_from(col).unwrap_or(u16::MAX);
                if cell.is_empty() {
                    continue;
                }
                if looks_like_formula(cell) {
                    sheet.write_string_with_format(r, col, cell, &text)?;
                } else {
                    sheet.write_string(r, col, cell)?;
                }
            }
        }
        book.save_to_buffer()
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(attachment(
        &log,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
        body,
    ))
}

/// Adds `unattended` to an alarm's JSON (the board's list, its page and the stream) when a
/// duty room covers its school (see [`Duty::unattended`]).
pub(super) fn annotate(duty: &Duty, value: &mut Value, school: &str, raised_at: i64) {
    if let (Some(flag), Some(obj)) = (duty.unattended(school, raised_at), value.as_object_mut()) {
        obj.insert("unattended".into(), json!(flag));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_days_in_the_yyyy_mm_dd_form_parse() {
        assert_eq!(parse_date("2026-12-06"), Some((2026, 12, 6)));
        assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "26-12-06",
            "",
            "2026-12-06x",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
