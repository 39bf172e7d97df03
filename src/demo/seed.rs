//! The demo's previous month: a plausible month of hazard tickets across three schools, so a
//! newcomer sees a working bureau page at once — tickets in every state, one overdue and
//! supervised, one school's month submitted in time, one submitted late, one missing. Written
//! once into an empty ticket database before the gateway starts.

use std::sync::Arc;

use tracing::info;

use crate::access::{Principal, Role};
use crate::tickets::model::{Category, Grade, SourceKind, State, Ticket};
use crate::tickets::time::{local_date, month_range};
use crate::tickets::{Created, TicketError, Tickets, TicketsConfig};

const DAY: i64 = 86_400_000;
const SEEDER: &str = "demo-seed";

/// One seeded hazard: school, day of the month it was found, state, category, grade, building,
/// room, description, and whether it is under supervision.
struct Hazard {
    school: &'static str,
    day: i64,
    state: State,
    category: Category,
    grade: Grade,
    building: &'static str,
    room: &'static str,
    description: &'static str,
    supervised: bool,
}

const fn hazard(
    school: &'static str,
    day: i64,
    state: State,
    category: Category,
    building: &'static str,
    room: &'static str,
    description: &'static str,
) -> Hazard {
    Hazard {
        school,
        day,
        state,
        category,
        grade: Grade::General,
        building,
        room,
        description,
        supervised: false,
    }
}

fn hazards() -> Vec<Hazard> {
    use Category::*;
    use State::*;
    vec![
        hazard(
            "xhsy",
            2,
            Closed,
            Fire,
            "教学楼A",
            "201",
            "灭火器压力不足两具",
        ),
        hazard(
            "xhsy",
            5,
            Closed,
            Building,
            "教学楼A",
            "2楼走廊",
            "楼梯扶手松动",
        ),
        hazard(
            "xhsy",
            9,
            Reported,
            LabChemical,
            "实验楼",
            "化学实验室",
            "危化品柜台账与实物不符",
        ),
        hazard(
            "xhsy",
            14,
            Rectifying,
            FoodWater,
            "食堂",
            "留样间",
            "留样冰柜温度记录缺两天",
        ),
        Hazard {
            grade: Grade::Major,
            ..hazard(
                "xhsy",
                18,
                Deferred,
                Building,
                "综合楼",
                "屋面",
                "屋面防水层老化渗漏",
            )
        },
        hazard(
            "xhsy",
            24,
            Registered,
            Security,
            "校门",
            "门卫室",
            "监控摄像头一路黑屏",
        ),
        hazard("dfzx", 3, Closed, Fire, "宿舍楼", "3楼", "疏散指示灯不亮"),
        Hazard {
            supervised: true,
            ..hazard(
                "dfzx",
                6,
                Rectifying,
                Fire,
                "教学楼B",
                "1楼",
                "消防通道堆放杂物",
            )
        },
        hazard(
            "dfzx",
            12,
            Reported,
            Traffic,
            "校门",
            "东门",
            "上下学时段无护学岗",
        ),
        hazard(
            "dfzx",
            21,
            Registered,
            LabChemical,
            "实验楼",
            "化学准备室",
            "通风橱风量不足",
        ),
        hazard(
            "syxx",
            4,
            Closed,
            FoodWater,
            "食堂",
            "操作间",
            "燃气报警器过期未检",
        ),
        hazard(
            "syxx",
            11,
            Rectifying,
            Building,
            "操场",
            "看台",
            "看台栏杆锈蚀",
        ),
        hazard(
            "syxx",
            19,
            Registered,
            Security,
            "围墙",
            "北侧",
            "围墙有缺口",
        ),
    ]
}

/// Seeds the month before `now` into an empty ticket database; leaves one with tickets alone.
/// Returns how many tickets it wrote.
pub async fn previous_month(
    config: &TicketsConfig,
    data_dir: &std::path::Path,
    now: i64,
) -> Result<usize, TicketError> {
    let tickets = Tickets::open(config, data_dir).await?;
    let seeded = seed(&tickets, now).await;
    tickets.store.close().await;
    seeded
}

async fn seed(tickets: &Tickets, now: i64) -> Result<usize, TicketError> {
    if tickets.store.count().await? > 0 {
        return Ok(0);
    }
    let offset = tickets.config.offset_ms();
    let (y, m, _) = local_date(now, offset);
    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    let (start, end) = month_range(py, pm, offset);
    let month = format!("{py:04}-{pm:02}");
    let list = hazards();
    for h in &list {
        // 09:30 local on the day it was found.
        let found = start + (h.day - 1) * DAY + 90 * 60_000;
        let mut t = tickets.blank(h.school, h.category, h.grade, found, SEEDER);
        t.source = SourceKind::Inspection;
        t.inspector = Some("校安全员".into());
        t.building = Some(h.building.into());
        t.room = Some(h.room.into());
        t.location = format!("{} {}", h.building, h.room);
        t.description = h.description.into();
        shape(&mut t, h, found, end);
        let code = tickets.config.school_code(h.school);
        let numbered = format!("{py:04}{pm:02}");
        match tickets.store.create(t, &code, &numbered, None).await? {
            Created::New(_) => {}
            Created::OpenExists => {
                return Err(TicketError::Database("seed ticket not created".into()))
            }
        }
    }
    // xhsy reports in time, dfzx after the due day, syxx not at all.
    let due = tickets.school_due_at(&month)?;
    let safety = |school: &str| Principal {
        name: format!("safety-{school}"),
        role: Some(Role::SchoolSafety),
        schools: Some(Arc::from(vec![school.to_string()])),
    };
    tickets
        .submit_report_at(&safety("xhsy"), "xhsy", &month, due - 2 * DAY)
        .await?;
    tickets
        .submit_report_at(&safety("dfzx"), "dfzx", &month, (due + DAY).min(now))
        .await?;
    info!(
        month,
        tickets = list.len(),
        "demo: seeded the previous month"
    );
    Ok(list.len())
}

/// Seeds half a year of past drills into a local store that has none, so the district page's
/// drill compliance has a history: 星海 every month, 东方 in four of six, 实验小学 in five, the
/// kindergarten every other month. Returns how many it wrote.
pub async fn past_drills(
    storage: &crate::store::StorageConfig,
    offset_ms: i64,
    now: i64,
) -> Result<usize, crate::store::StoreError> {
    let store = crate::store::LocalStore::open(storage).await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drills")
        .fetch_one(store.pool())
        .await?;
    let mut written = 0;
    if existing == 0 {
        let (y, m, _) = local_date(now, offset_ms);
        for back in 1..=6i64 {
            let months = y * 12 + i64::from(m) - 1 - back;
            let (my, mm) = (
                months.div_euclid(12),
                u32::try_from(months.rem_euclid(12) + 1).unwrap_or(1),
            );
            let (start, _) = month_range(my, mm, offset_ms);
            let schools: &[(&str, bool)] = &[
                ("xhsy", true),
                ("dfzx", back % 3 != 0),
                ("syxx", back != 4),
                ("xhyey", back % 2 == 0),
            ];
            for (school, held) in schools {
                if !held {
                    continue;
                }
                // 15:00 local on the 10th: a fire evacuation drill of 40 minutes.
                let at = start + 9 * DAY + 15 * 3_600_000;
                let drill = crate::drills::NewDrill {
                    school: school.to_string(),
                    building: None,
                    started_by: SEEDER.into(),
                    reason: "消防疏散演练".into(),
                    until: at + 3_600_000,
                };
                let mut started = store.insert_drill(&drill, at).await?;
                started.ended_at = Some(at + 40 * 60_000);
                started.ended_by = Some(SEEDER.into());
                store.end_drill(&started).await?;
                written += 1;
            }
        }
    }
    store.close().await;
    Ok(written)
}

/// Fills in what a ticket in `h.state` has been through by the end of its month.
fn shape(t: &mut Ticket, h: &Hazard, found: i64, month_end: i64) {
    t.state = h.state;
    t.updated_at = found;
    // Open ones are due well after the month, so only the supervised one is overdue (the
    // supervision job would otherwise put every one of them under 督办 at once).
    let open_deadline = month_end + 30 * DAY;
    if h.state == State::Registered {
        t.deadline_at = Some(open_deadline);
        return;
    }
    t.responsible_person = Some(
        match h.school {
            "xhsy" => "王建国",
            "dfzx" => "李明",
            _ => "张丽",
        }
        .into(),
    );
    t.measures = Some(format!("整改：{}", h.description));
    t.funding = Some("学校公用经费".into());
    t.contingency_plan = Some("整改完成前设置警示标识，专人巡查".into());
    t.deadline_at = Some(match h.state {
        State::Rectifying => open_deadline,
        _ => found + 7 * DAY,
    });
    if h.supervised {
        // Past its deadline and the supervision grace: 督办 by the bureau.
        t.deadline_at = Some(found + 5 * DAY);
        t.supervised = true;
        t.supervised_at = Some(found + 9 * DAY);
        t.supervised_by = Some("bureau".into());
    }
    match h.state {
        State::Deferred => {
            t.deferral_plan = Some("暑假期间施工".into());
            t.interim_measures = Some("设置接水桶和警示标识，雨天专人巡查".into());
            t.deadline_at = Some(month_end + 60 * DAY);
        }
        State::Reported | State::Closed => {
            let done = found + 3 * DAY;
            t.rectification = Some("已按措施整改完毕".into());
            t.rectified_at = Some(done);
            t.reported_by = Some(format!("safety-{}", h.school));
            t.reported_at = Some(done);
            if h.state == State::Closed {
                t.verifier = Some("bureau".into());
                t.closed_at = Some(done + DAY);
            }
        }
        _ => {}
    }
    t.updated_at = [t.closed_at, t.reported_at, t.supervised_at]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(found);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_seeded_month_has_every_state_in_three_schools_and_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::demo::demo_config().unwrap().tickets;
        let now = crate::model::now_ms();
        assert_eq!(previous_month(&config, dir.path(), now).await.unwrap(), 13);
        assert_eq!(previous_month(&config, dir.path(), now).await.unwrap(), 0);
        let tickets = Tickets::open(&config, dir.path()).await.unwrap();
        let bureau = Principal {
            name: "bureau".into(),
            role: Some(Role::Bureau),
            schools: None,
        };
        let offset = config.offset_ms();
        let (y, m, _) = local_date(now, offset);
        let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        let month = format!("{py:04}-{pm:02}");
        let rows = tickets
            .ledger(&month, None, Default::default())
            .await
            .unwrap();
        assert_eq!(rows.len(), 13);
        for state in ["已登记", "整改中", "管控中", "待验收", "已销号"] {
            assert!(rows.iter().any(|r| r.state == state), "{state}");
        }
        assert!(rows.iter().any(|r| r.supervised == "是"));
        let calendar = tickets.calendar(&bureau, &month).await.unwrap();
        let status = |school: &str| {
            let s = calendar
                .schools
                .iter()
                .find(|s| s.school == school)
                .unwrap();
            serde_json::to_value(s.status).unwrap()
        };
        assert_eq!(status("xhsy"), "submitted");
        assert_eq!(status("dfzx"), "late");
        assert_eq!(status("syxx"), "missing");
        tickets.store.close().await;
    }

    #[tokio::test]
    async fn half_a_year_of_drills_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::store::StorageConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let now = crate::model::now_ms();
        let offset = 8 * 3_600_000;
        // 6 + 4 + 5 + 3.
        assert_eq!(past_drills(&storage, offset, now).await.unwrap(), 18);
        assert_eq!(past_drills(&storage, offset, now).await.unwrap(), 0);
        let store = crate::store::LocalStore::open(&storage).await.unwrap();
        let kept = store
            .drill_history(Some("xhsy"), now - 200 * DAY, now, 100)
            .await
            .unwrap();
        assert_eq!(kept.len(), 6);
        assert!(kept.iter().all(|d| d.ended_at.is_some()));
        assert!(store.active_drills().await.unwrap().is_empty());
        store.close().await;
    }
}
