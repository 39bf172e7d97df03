//! Hazard tickets against real databases: SQLite in a temp dir and PostgreSQL (the private
//! cluster scripts/test starts, `CAMPUSGUARD_TEST_PG_URL`; else 127.0.0.1:5432, database `test`;
//! one schema per test, dropped at the end). The workflow,
//! numbering under concurrency, one ticket per alarm across two gateways, alarm → ticket
//! policies, the ledger export, and the HTTP API with its role checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use campusguard::access::{Principal, Role};
use campusguard::alarms::{Alarm, AlarmEvent, AlarmState, Transition};
use campusguard::model::{AlarmClass, SensorId, Severity};
use campusguard::tickets::export::{Format, HEADERS_EN, HEADERS_ZH};
use campusguard::tickets::model::Lang;
use campusguard::tickets::{
    Action, ActionInput, Category, Grade, ListFilter, NewTicket, State, TicketError, Tickets,
    TicketsConfig,
};
use serde_json::json;
use support::*;

/// A ticket database for one test; PostgreSQL schemas are dropped on `finish`.
struct Db {
    config: TicketsConfig,
    dir: tempfile::TempDir,
    schema: Option<String>,
}

impl Db {
    fn sqlite() -> Self {
        Self {
            config: TicketsConfig::default(),
            dir: tempfile::tempdir().unwrap(),
            schema: None,
        }
    }

    fn postgres() -> Self {
        let schema = format!(
            "t_{}",
            unique("pg").replace(['-'], "_").to_ascii_lowercase()
        );
        let config = TicketsConfig {
            database_url: Some(support::pg_url()),
            schema: Some(schema.clone()),
            ..TicketsConfig::default()
        };
        Self {
            config,
            dir: tempfile::tempdir().unwrap(),
            schema: Some(schema),
        }
    }

    async fn open(&self) -> Tickets {
        Tickets::open(&self.config, self.dir.path()).await.unwrap()
    }

    async fn finish(mut self, tickets: &Tickets) {
        if let Some(schema) = self.schema.take() {
            tickets.store.drop_schema(&schema).await.unwrap();
        }
        tickets.store.close().await;
    }
}

impl Drop for Db {
    /// A test that panicked before `finish` still drops its schema.
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Executor;
                sqlx::any::install_default_drivers();
                if let Ok(pool) = sqlx::AnyPool::connect(&support::pg_url()).await {
                    let _ = pool
                        .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                        .await;
                    pool.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn user(name: &str, role: Role) -> Principal {
    Principal {
        name: name.into(),
        role: Some(role),
        schools: Some(Arc::from(vec!["xhsy".to_string()])),
    }
}

fn inspection(description: &str) -> NewTicket {
    serde_json::from_value(json!({
        "school": "xhsy",
        "location": "实验楼 301",
        "category": "lab_chemical",
        "description": description,
    }))
    .unwrap()
}

fn input(version: i64, v: serde_json::Value) -> ActionInput {
    let mut v = v;
    v["version"] = json!(version);
    serde_json::from_value(v).unwrap()
}

async fn lifecycle(db: Db) {
    let tickets = db.open().await;
    let inspector = user("inspector-1", Role::Operator);
    let safety = user("safety-1", Role::SchoolSafety);
    let safety2 = user("safety-2", Role::SchoolSafety);
    let t = tickets
        .file(&inspector, inspection("危化品柜通风不足"))
        .await
        .unwrap();
    assert!(
        t.id.starts_with("XHSY-") && t.id.ends_with("-0001"),
        "{}",
        t.id
    );
    assert_eq!(t.state, State::Registered);
    assert_eq!(t.responsible_unit.as_deref(), Some("教育处、办公室"));

    let assign = json!({"responsible_person": "王老师", "measures": "加装排风扇"});
    let t = tickets
        .act(
            &safety,
            &t.id,
            Action::Assign,
            input(t.version, assign.clone()),
        )
        .await
        .unwrap();
    assert_eq!(t.state, State::Rectifying);
    assert!(t.deadline_at.is_some());

    // A stale version is refused and changes nothing.
    let stale = tickets
        .act(
            &safety,
            &t.id,
            Action::Report,
            input(t.version - 1, json!({"rectification": "x"})),
        )
        .await;
    assert!(
        matches!(stale, Err(TicketError::StaleVersion { .. })),
        "{stale:?}"
    );

    // An illegal action names the state and what is allowed.
    let illegal = tickets
        .act(&safety2, &t.id, Action::Verify, input(t.version, json!({})))
        .await
        .unwrap_err();
    assert!(illegal.to_string().contains("rectifying"), "{illegal}");
    assert!(
        illegal.to_string().contains("assign, defer, report"),
        "{illegal}"
    );

    let t = tickets
        .act(
            &safety,
            &t.id,
            Action::Defer,
            input(
                t.version,
                json!({"plan": "寒假施工", "interim_measures": "限制使用", "deadline_at": 1900000000000i64}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(t.state, State::Deferred);
    let t = tickets
        .act(&safety, &t.id, Action::Assign, input(t.version, assign))
        .await
        .unwrap();
    let t = tickets
        .act(
            &safety,
            &t.id,
            Action::Report,
            input(t.version, json!({"rectification": "已加装"})),
        )
        .await
        .unwrap();
    // The reporter may not verify.
    let own = tickets
        .act(&safety, &t.id, Action::Verify, input(t.version, json!({})))
        .await;
    assert!(matches!(own, Err(TicketError::Forbidden(_))), "{own:?}");
    let t = tickets
        .act(
            &safety2,
            &t.id,
            Action::Reject,
            input(t.version, json!({"reason": "风量不足"})),
        )
        .await
        .unwrap();
    assert_eq!(t.state, State::Rectifying);
    let t = tickets
        .act(
            &safety,
            &t.id,
            Action::Report,
            input(t.version, json!({"rectification": "更换大功率风扇"})),
        )
        .await
        .unwrap();
    let t = tickets
        .act(&safety2, &t.id, Action::Verify, input(t.version, json!({})))
        .await
        .unwrap();
    assert_eq!(t.state, State::Closed);
    assert_eq!(t.verifier.as_deref(), Some("safety-2"));

    let history = tickets.store.history(&t.id).await.unwrap();
    let actions: Vec<&str> = history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(
        actions,
        ["create", "assign", "defer", "assign", "report", "reject", "report", "verify"]
    );
    assert_eq!(history[5].actor, "safety-2");
    assert_eq!(
        history[5].changes["state"],
        json!(["reported", "rectifying"])
    );
    assert_eq!(history.last().unwrap().version, t.version);
    db.finish(&tickets).await;
}

#[tokio::test]
async fn a_ticket_goes_through_reject_and_defer_loops_to_closed_on_sqlite() {
    lifecycle(Db::sqlite()).await;
}

#[tokio::test]
async fn a_ticket_goes_through_reject_and_defer_loops_to_closed_on_postgres() {
    lifecycle(Db::postgres()).await;
}

async fn concurrent_numbers(db: Db) {
    let tickets = db.open().await;
    let who = user("inspector", Role::Operator);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let tickets = tickets.clone();
        let who = who.clone();
        tasks.push(tokio::spawn(async move {
            tickets
                .file(&who, inspection(&format!("隐患 {i}")))
                .await
                .unwrap()
                .id
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    let mut seqs: Vec<u32> = numbers
        .iter()
        .map(|n| n.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "{numbers:?}");
    db.finish(&tickets).await;
}

#[tokio::test]
async fn fifty_concurrent_creators_get_gap_free_unique_numbers_on_postgres() {
    concurrent_numbers(Db::postgres()).await;
}

#[tokio::test]
async fn fifty_concurrent_creators_get_gap_free_unique_numbers_on_sqlite() {
    concurrent_numbers(Db::sqlite()).await;
}

fn alarm(id: u64, point: &str, rule: &str, class: AlarmClass) -> Alarm {
    let sensor = SensorId::new("xhsy", "cab-1", point);
    Alarm {
        id,
        school: sensor.school.clone(),
        device: sensor.device.clone(),
        point: sensor.point.clone(),
        sensor,
        rule: rule.into(),
        class,
        severity: Severity::Alarm,
        state: AlarmState::ActiveUnacked,
        value: None,
        threshold: Some(50.0),
        message: "可燃气体浓度超限".into(),
        raised_at: campusguard::model::now_ms(),
        updated_at: campusguard::model::now_ms(),
        reading_ts: 1_764_300_000_000 + i64::try_from(id).unwrap(),
        cleared_at: None,
        condition_active: true,
        acked_by: None,
        acked_at: None,
        ack_comment: None,
        shelved: None,
        drill: false,
        occurrences: 1,
    }
}

fn event(transition: Transition, alarm: &Alarm) -> Arc<AlarmEvent> {
    Arc::new(AlarmEvent {
        transition,
        at: campusguard::model::now_ms(),
        user: "system".into(),
        comment: None,
        false_alarm: false,
        disposition: None,
        alarm: alarm.clone(),
    })
}

#[tokio::test]
async fn two_ticket_services_on_one_postgres_filing_the_same_alarm_at_once_make_exactly_one_ticket()
{
    let db = Db::postgres();
    let gateway_a = db.open().await;
    let gateway_b = db.open().await;
    // Each gateway numbers its own alarms; the reading is the same.
    let a = alarm(7, "lel_pct", "lel_high", AlarmClass::Gas);
    let b = Alarm { id: 9, ..a.clone() };
    let (ra, rb) = tokio::join!(
        gateway_a.file_from_alarm(
            &a,
            "lel_high",
            "gas".into(),
            Category::LabChemical,
            Grade::Major,
            None
        ),
        gateway_b.file_from_alarm(
            &b,
            "lel_high",
            "gas".into(),
            Category::LabChemical,
            Grade::Major,
            None
        ),
    );
    assert_eq!(ra.unwrap().id, rb.unwrap().id);
    assert_eq!(gateway_a.store.count().await.unwrap(), 1);
    let all = gateway_a
        .store
        .list(
            &ListFilter {
                limit: 10,
                ..ListFilter::default()
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(all[0].occurrences, 1, "the same reading counts once");
    assert!(
        all[0].id.ends_with("-0001"),
        "the loser gave its number back"
    );
    gateway_b.store.close().await;
    db.finish(&gateway_a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_whole_gateways_on_one_postgres_raising_the_same_alarm_make_exactly_one_ticket() {
    let db = Db::postgres();
    let schema = db.schema.clone().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Setup::mosquitto("tickets-2gw", dir_a.path());
    let mut b = Setup::mosquitto("tickets-2gw", dir_b.path());
    b.prefix = a.prefix.clone();
    let extra = format!(
        "[tickets]\ndatabase_url = \"{}\"\nschema = \"{schema}\"\n\n[tickets.policy.rule]\ntemp_high = \"on_raise\"\n",
        support::pg_url()
    );
    a.extra_toml = extra.clone();
    b.extra_toml = extra;
    let mut config_b = b.config();
    config_b.mqtt.client_id = format!("{}-gw-b", b.prefix);
    let stop = tokio_util::sync::CancellationToken::new();
    let gw_a = campusguard::start(a.config(), stop.clone()).await.unwrap();
    let gw_b = campusguard::start(config_b, stop.clone()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gw_a.metrics.mqtt_connected.get() != 1 || gw_b.metrics.mqtt_connected.get() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "gateways connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let dev = Device::connect(support::mosquitto_port(), &unique("dev")).await;
    let topic = |rest: &str| format!("{}/xhsy/room-1/{rest}", a.prefix);
    dev.publish(
        &topic("meta"),
        r#"{"profile":"test_room","building":"A","room":"101"}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    dev.publish(&topic("telemetry"), r#"{"temp_c":22.0}"#).await;
    dev.publish(&topic("telemetry"), r#"{"ts":1764300000000,"temp_c":42.5}"#)
        .await;

    let reader = db.open().await;
    wait_for_tickets(&reader, 1).await;
    // Both gateways have had time to file by now; still one ticket, one occurrence.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = all_tickets(&reader).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].sensor.as_deref(), Some("xhsy/room-1/temp_c"));
    assert_eq!(all[0].occurrences, 1);
    assert!(all[0].id.ends_with("-0001"));

    stop.cancel();
    for gw in [gw_a, gw_b] {
        tokio::time::timeout(Duration::from_secs(15), gw.wait())
            .await
            .expect("gateway stops");
    }
    db.finish(&reader).await;
}

/// The alarm outbox the policy task reads: a local store of its own, written as the core does.
struct Feed {
    store: campusguard::store::LocalStore,
    _dir: tempfile::TempDir,
}

impl Feed {
    async fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = campusguard::store::StorageConfig {
            data_dir: dir.path().to_path_buf(),
            ..campusguard::store::StorageConfig::default()
        };
        let store = campusguard::store::LocalStore::open(&config).await.unwrap();
        Self { store, _dir: dir }
    }

    /// Journals `event` (the alarm outbox entry the policy reads).
    async fn send(&self, event: Arc<AlarmEvent>) -> Result<(), campusguard::store::StoreError> {
        self.store.record_events(&[(*event).clone()]).await
    }

    /// Starts a policy task on this outbox (its cursor as a restart would find it).
    async fn start_policy(&self, tickets: &Tickets) -> tokio_util::sync::CancellationToken {
        let stop = tokio_util::sync::CancellationToken::new();
        let reader = self
            .store
            .outbox_reader(campusguard::tickets::policy::CONSUMER)
            .await
            .unwrap();
        tokio::spawn(campusguard::tickets::policy::run(
            tickets.clone(),
            reader,
            self.store.clone(),
            stop.clone(),
        ));
        stop
    }
}

/// Starts the policy task on a private alarm outbox.
async fn start_policy(tickets: &Tickets) -> (Feed, tokio_util::sync::CancellationToken) {
    let feed = Feed::open().await;
    let stop = feed.start_policy(tickets).await;
    (feed, stop)
}

async fn wait_for_tickets(tickets: &Tickets, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if tickets.store.count().await.unwrap() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} ticket(s) not filed within 10 s");
}

async fn all_tickets(tickets: &Tickets) -> Vec<campusguard::tickets::Ticket> {
    tickets
        .store
        .list(
            &ListFilter {
                limit: 100,
                ..ListFilter::default()
            },
            0,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn policies_file_on_raise_after_a_delay_and_on_the_nth_repeat_but_never_in_drill() {
    let mut db = Db::sqlite();
    db.config = toml::from_str(
        r#"
[policy.class]
supervisory = { if_active_for = "300ms" }
[policy.rule]
door_repeats = { repeats = { count = 3, within = "1h" } }
"#,
    )
    .unwrap();
    let tickets = db.open().await;
    let (tx, stop) = start_policy(&tickets).await;

    // Drill: never a ticket, even for gas on raise.
    let mut drill = alarm(1, "voc_ppm", "voc_high", AlarmClass::Gas);
    drill.drill = true;
    tx.send(event(Transition::Raised, &drill)).await.unwrap();

    // Gas on raise.
    let gas = alarm(2, "lel_pct", "lel_high", AlarmClass::Gas);
    tx.send(event(Transition::Raised, &gas)).await.unwrap();
    wait_for_tickets(&tickets, 1).await;
    // A repeat of the same (sensor, rule) appends an occurrence to the open ticket.
    let again = Alarm {
        id: 3,
        reading_ts: gas.reading_ts + 1000,
        ..gas.clone()
    };
    tx.send(event(Transition::Raised, &again)).await.unwrap();

    // Supervisory: cleared before the delay → nothing; still active after it → a ticket.
    let short = alarm(4, "fan_on", "fan_off", AlarmClass::Supervisory);
    tx.send(event(Transition::Raised, &short)).await.unwrap();
    let cleared = Alarm {
        state: AlarmState::Cleared,
        condition_active: false,
        ..short.clone()
    };
    tx.send(event(Transition::Cleared, &cleared)).await.unwrap();
    let long = alarm(5, "temp_c", "temp_high", AlarmClass::Supervisory);
    tx.send(event(Transition::Raised, &long)).await.unwrap();
    wait_for_tickets(&tickets, 2).await;

    // Repeats: the third raise within the window files.
    let door = alarm(6, "door_open", "door_repeats", AlarmClass::Supervisory);
    for i in 0..3u64 {
        let a = Alarm {
            id: 6 + i,
            reading_ts: door.reading_ts + i as i64,
            ..door.clone()
        };
        tx.send(event(Transition::Raised, &a)).await.unwrap();
        if i < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(
                tickets.store.count().await.unwrap(),
                2,
                "not before the 3rd repeat"
            );
        }
    }
    wait_for_tickets(&tickets, 3).await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    let all = all_tickets(&tickets).await;
    assert_eq!(all.len(), 3, "{all:#?}");
    let rules: std::collections::BTreeSet<_> =
        all.iter().map(|t| t.rule.clone().unwrap()).collect();
    assert_eq!(
        rules,
        ["door_repeats", "lel_high", "temp_high"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let gas_ticket = all
        .iter()
        .find(|t| t.rule.as_deref() == Some("lel_high"))
        .unwrap();
    assert_eq!(gas_ticket.occurrences, 2);
    assert_eq!(gas_ticket.grade, Grade::Major);
    assert_eq!(gas_ticket.category, Category::LabChemical);
    assert_eq!(
        tickets
            .store
            .occurrences(&gas_ticket.id)
            .await
            .unwrap()
            .len(),
        2
    );
    stop.cancel();
    db.finish(&tickets).await;
}

/// `if_active_for` timers are rebuilt from the open alarms when the policy starts again: an
/// alarm raised before a restart still gets its ticket when its delay is up — once, also after
/// a further restart with the ticket already filed.
#[tokio::test]
async fn a_pending_if_active_for_timer_survives_a_restart_of_the_policy_and_files_once() {
    let mut db = Db::sqlite();
    db.config =
        toml::from_str("[policy.class]\nsupervisory = { if_active_for = \"1500ms\" }\n").unwrap();
    let tickets = db.open().await;
    let feed = Feed::open().await;
    let stop = feed.start_policy(&tickets).await;
    let long = alarm(1, "temp_c", "temp_high", AlarmClass::Supervisory);
    feed.send(event(Transition::Raised, &long)).await.unwrap();
    // The policy has read the raise (its cursor moved) but the delay is not up: stop it.
    let cursor = |store: campusguard::store::LocalStore| async move {
        store
            .outbox_reader(campusguard::tickets::policy::CONSUMER)
            .await
            .unwrap()
            .cursor()
    };
    eventually(
        "the raise read by the policy",
        Duration::from_secs(5),
        || {
            let store = feed.store.clone();
            async move { (cursor(store).await > 0).then_some(()) }
        },
    )
    .await;
    stop.cancel();
    assert_eq!(
        tickets.store.count().await.unwrap(),
        0,
        "not before the delay"
    );

    // A new policy task (a restart) knows the timer only from the open alarm.
    let stop = feed.start_policy(&tickets).await;
    wait_for_tickets(&tickets, 1).await;
    stop.cancel();
    // Started again after its ticket was filed, the rebuilt timer files nothing more.
    let stop = feed.start_policy(&tickets).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all = all_tickets(&tickets).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].occurrences, 1);
    stop.cancel();
    db.finish(&tickets).await;
}

#[tokio::test]
async fn a_recurrence_after_closing_opens_a_new_ticket_linking_the_old_and_a_false_fire_alarm_files_maintenance(
) {
    let db = Db::sqlite();
    let tickets = db.open().await;
    let (tx, stop) = start_policy(&tickets).await;
    let gas = alarm(1, "lel_pct", "lel_high", AlarmClass::Gas);
    tx.send(event(Transition::Raised, &gas)).await.unwrap();
    wait_for_tickets(&tickets, 1).await;
    let first = all_tickets(&tickets).await.remove(0);

    // Close it: 立查立改 by school safety (major needs an after photo), verified by the bureau.
    let safety = user("safety-1", Role::SchoolSafety);
    let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3];
    let missing = tickets
        .act(
            &safety,
            &first.id,
            Action::FixNow,
            input(
                first.version,
                json!({"measures": "关闭气源", "rectification": "已更换阀门"}),
            ),
        )
        .await;
    assert!(
        matches!(missing, Err(TicketError::Invalid(_))),
        "{missing:?}"
    );
    tickets
        .attach(
            &safety,
            &first.id,
            campusguard::tickets::model::AttachmentKind::After,
            &png,
        )
        .await
        .unwrap();
    let current = tickets.get(&safety, &first.id).await.unwrap();
    let t = tickets
        .act(
            &safety,
            &first.id,
            Action::FixNow,
            input(
                current.version,
                json!({"measures": "关闭气源", "rectification": "已更换阀门"}),
            ),
        )
        .await
        .unwrap();
    let t = tickets
        .act(
            &user("bureau-1", Role::Bureau),
            &t.id,
            Action::Verify,
            input(t.version, json!({})),
        )
        .await
        .unwrap();
    assert_eq!(t.state, State::Closed);

    let again = Alarm {
        id: 2,
        reading_ts: gas.reading_ts + 5000,
        ..gas.clone()
    };
    tx.send(event(Transition::Raised, &again)).await.unwrap();
    wait_for_tickets(&tickets, 2).await;

    let mut fire = alarm(3, "smoke", "smoke", AlarmClass::Fire);
    tx.send(event(Transition::Raised, &fire)).await.unwrap(); // fire: never a ticket by itself
    fire.state = AlarmState::Cleared;
    let mut reset = (*event(Transition::Reset, &fire)).clone();
    reset.false_alarm = true;
    reset.comment = Some("探测器积尘".into());
    tx.send(Arc::new(reset)).await.unwrap();
    wait_for_tickets(&tickets, 3).await;

    let all = all_tickets(&tickets).await;
    let second = all
        .iter()
        .find(|t| t.rule.as_deref() == Some("lel_high") && t.state != State::Closed)
        .unwrap();
    assert_eq!(second.previous_ticket.as_deref(), Some(first.id.as_str()));
    let maintenance = all
        .iter()
        .find(|t| t.rule.as_deref() == Some("smoke#false_alarm"))
        .unwrap();
    assert_eq!(maintenance.category, Category::Fire);
    assert!(maintenance.description.contains("探测器积尘"));
    stop.cancel();
    db.finish(&tickets).await;
}

async fn export_round_trip(db: Db) {
    let tickets = db.open().await;
    let who = user("inspector", Role::SchoolSafety);
    for i in 0..5 {
        let mut new = inspection(&format!("隐患, \"{i}\"\n第二行"));
        if i == 0 {
            new.fix_now =
                Some(serde_json::from_value(json!({"rectification": "当场整改"})).unwrap());
        }
        tickets.file(&who, new).await.unwrap();
    }
    let now = campusguard::model::now_ms();
    let (y, m, _) = campusguard::tickets::time::local_date(now, tickets.config.offset_ms());
    let month = format!("{y:04}-{m:02}");
    let rows = tickets.ledger(&month, None, Lang::Zh).await.unwrap();
    assert_eq!(rows.len(), 5);

    let csv_bytes = tickets
        .export(&month, Format::Csv, Lang::Zh, None)
        .await
        .unwrap();
    assert!(csv_bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "BOM");
    let mut reader = csv::Reader::from_reader(&csv_bytes[3..]);
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        HEADERS_ZH
    );
    let parsed: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let expected: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.cells().iter().map(|c| c.to_string()).collect())
        .collect();
    assert_eq!(parsed, expected);
    assert_eq!(parsed[0][15], "待验收");

    let xlsx = tickets
        .export(&month, Format::Xlsx, Lang::En, None)
        .await
        .unwrap();
    use calamine::Reader;
    let mut workbook: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(xlsx)).unwrap();
    let range = workbook.worksheet_range("Hazard ledger").unwrap();
    assert_eq!(range.height(), 6);
    let header: Vec<String> = range
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(header, HEADERS_EN);

    let json_bytes = tickets
        .export(&month, Format::Json, Lang::En, None)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json_bytes).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5);

    // Next month's ledger still lists the open ones, not the one closed... none closed here,
    // and an earlier month has none.
    let empty = tickets.ledger("2001-01", None, Lang::Zh).await.unwrap();
    assert!(empty.is_empty());
    db.finish(&tickets).await;
}

#[tokio::test]
async fn the_ledger_csv_reparses_to_the_same_rows_and_the_xlsx_opens_with_calamine_on_sqlite() {
    export_round_trip(Db::sqlite()).await;
}

#[tokio::test]
async fn the_ledger_csv_reparses_to_the_same_rows_and_the_xlsx_opens_with_calamine_on_postgres() {
    export_round_trip(Db::postgres()).await;
}

#[tokio::test]
async fn overdue_tickets_are_put_under_supervision_after_the_grace() {
    let db = Db::sqlite();
    let tickets = db.open().await;
    let safety = user("safety-1", Role::SchoolSafety);
    let t = tickets
        .file(&safety, inspection("楼梯扶手松动"))
        .await
        .unwrap();
    let t = tickets
        .act(
            &safety,
            &t.id,
            Action::Assign,
            input(
                t.version,
                json!({"responsible_person": "李", "measures": "加固", "deadline_at": 1000}),
            ),
        )
        .await
        .unwrap();
    let fresh = tickets.file(&safety, inspection("未逾期")).await.unwrap();
    let marked = tickets
        .supervise_overdue(campusguard::model::now_ms())
        .await
        .unwrap();
    assert_eq!(
        marked.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        vec![t.id.clone()]
    );
    let overdue = tickets
        .list(
            &safety,
            ListFilter {
                overdue: Some(true),
                limit: 10,
                ..ListFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(overdue.len(), 1);
    assert!(overdue[0].supervised);
    let supervised = tickets
        .list(
            &safety,
            ListFilter {
                supervised: Some(false),
                limit: 10,
                ..ListFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        supervised.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        vec![fresh.id]
    );
    // A second pass marks nothing new.
    assert!(tickets
        .supervise_overdue(campusguard::model::now_ms())
        .await
        .unwrap()
        .is_empty());
    let history = tickets.store.history(&t.id).await.unwrap();
    assert_eq!(history.last().unwrap().action, "auto_supervise");
    db.finish(&tickets).await;
}

// ---- HTTP API and role checks, on a whole in-process gateway ------------------------------

const SAFETY_TOKEN: &str = "test-safety-token-0123456789abc";
const SAFETY2_TOKEN: &str = "test-safety2-token-0123456789ab";
const OTHER_SCHOOL_TOKEN: &str = "test-other-school-token-012345";
const LAB_TOKEN: &str = "test-lab-token-0123456789abcdef";

fn api_tokens() -> String {
    format!(
        r#"
[[http.tokens]]
name = "safety-1"
token = "{SAFETY_TOKEN}"
role = "school_safety"
schools = ["xhsy"]

[[http.tokens]]
name = "safety-2"
token = "{SAFETY2_TOKEN}"
role = "school_safety"
schools = ["xhsy"]

[[http.tokens]]
name = "safety-other"
token = "{OTHER_SCHOOL_TOKEN}"
role = "school_safety"
schools = ["other"]

[[http.tokens]]
name = "lab-1"
token = "{LAB_TOKEN}"
role = "lab_manager"
schools = ["xhsy"]
"#
    )
}

#[tokio::test]
async fn the_api_enforces_roles_with_403_that_change_nothing_and_409_on_illegal_or_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("tickets-api", dir.path());
    setup.extra_toml = api_tokens();
    let gw = TestGateway::start(&setup).await;
    let new = json!({"school": "xhsy", "location": "食堂", "category": "food_water", "grade": "general", "description": "留样冰箱温度偏高"});

    // Bureau may not file; another school may not file for xhsy; anonymous gets 401.
    assert_eq!(
        gw.post_json("/api/v1/tickets", Some(BUREAU_TOKEN), new.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        gw.post_json("/api/v1/tickets", Some(OTHER_SCHOOL_TOKEN), new.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        gw.post_json("/api/v1/tickets", None, new.clone()).await.0,
        401
    );
    let (status, t) = gw
        .post_json("/api/v1/tickets", Some(LAB_TOKEN), new.clone())
        .await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(t["responsible_unit"], "办公室、政宣处");
    assert_eq!(
        t["allowed_actions"],
        json!(["assign", "defer", "fix_now", "supervise"])
    );

    let act = |action: &str| format!("/api/v1/tickets/{id}/actions/{action}");
    let assign = json!({"version": 1, "responsible_person": "赵师傅", "measures": "维修压缩机"});
    for token in [OPERATOR_TOKEN, LAB_TOKEN, BUREAU_TOKEN, OTHER_SCHOOL_TOKEN] {
        let (status, body) = gw
            .post_json(&act("assign"), Some(token), assign.clone())
            .await;
        assert!(status == 403 || status == 404, "{token}: {status} {body}");
    }
    // The other school cannot even see it.
    assert_eq!(
        gw.get_json(&format!("/api/v1/tickets/{id}"), Some(OTHER_SCHOOL_TOKEN))
            .await
            .0,
        404
    );
    let (_, unchanged) = gw
        .get_json(&format!("/api/v1/tickets/{id}"), Some(BUREAU_TOKEN))
        .await;
    assert_eq!(unchanged["version"], 1);
    assert_eq!(unchanged["state"], "registered");

    let (status, body) = gw
        .post_json(
            &act("report"),
            Some(SAFETY_TOKEN),
            json!({"version": 1, "rectification": "x"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "illegal_transition");
    assert!(
        body["message"].as_str().unwrap().contains("registered"),
        "{body}"
    );

    let (status, t) = gw
        .post_json(&act("assign"), Some(SAFETY_TOKEN), assign.clone())
        .await;
    assert_eq!(status, 200, "{t}");
    let (status, body) = gw
        .post_json(
            &act("defer"),
            Some(SAFETY_TOKEN),
            json!({"version": 1, "plan": "p", "interim_measures": "i", "deadline_at": 1}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "stale_version");

    // Bureau supervises; school safety may not.
    assert_eq!(
        gw.post_json(&act("supervise"), Some(SAFETY_TOKEN), json!({"version": 2}))
            .await
            .0,
        403
    );
    let (status, t) = gw
        .post_json(&act("supervise"), Some(BUREAU_TOKEN), json!({"version": 2}))
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["supervised"], true);

    // Evidence: only JPEG/PNG/PDF by content; served back to readers only.
    let upload = |token: &'static str, bytes: Vec<u8>, name: &'static str| {
        let url = gw.url(&format!("/api/v1/tickets/{id}/attachments"));
        async move {
            let form = reqwest::multipart::Form::new().text("kind", "after").part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .multipart(form)
                .send()
                .await
                .unwrap()
        }
    };
    let fake = upload(SAFETY_TOKEN, b"MZ not an image".to_vec(), "photo.png").await;
    assert_eq!(fake.status().as_u16(), 400);
    let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F'];
    let ok = upload(SAFETY_TOKEN, jpeg.clone(), "../../etc/passwd").await;
    assert_eq!(ok.status().as_u16(), 201);
    let a: serde_json::Value = ok.json().await.unwrap();
    let sha = a["sha256"].as_str().unwrap();
    assert!(gw.data_dir.join("ticket-attachments").join(sha).exists());
    let url = gw.url(&format!("/api/v1/tickets/{id}/attachments/{sha}"));
    let got = reqwest::Client::new()
        .get(&url)
        .bearer_auth(SAFETY2_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.headers()["content-type"], "image/jpeg");
    assert_eq!(got.bytes().await.unwrap().to_vec(), jpeg);
    let denied = reqwest::Client::new()
        .get(&url)
        .bearer_auth(OTHER_SCHOOL_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 404);

    let (_, t) = gw
        .get_json(&format!("/api/v1/tickets/{id}"), Some(SAFETY_TOKEN))
        .await;
    let v = t["version"].as_i64().unwrap();
    let (status, t) = gw
        .post_json(
            &act("report"),
            Some(SAFETY_TOKEN),
            json!({"version": v, "rectification": "已修好"}),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    let (status, _) = gw
        .post_json(
            &act("verify"),
            Some(SAFETY_TOKEN),
            json!({"version": v + 1}),
        )
        .await;
    assert_eq!(status, 403, "the reporter may not verify");
    let (status, t) = gw
        .post_json(
            &act("verify"),
            Some(SAFETY2_TOKEN),
            json!({"version": v + 1}),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["state"], "closed");

    let (status, h) = gw
        .get_json(&format!("/api/v1/tickets/{id}/history"), Some(BUREAU_TOKEN))
        .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "create",
            "assign",
            "supervise",
            "attach",
            "report",
            "verify"
        ]
    );

    let (status, list) = gw
        .get_json(
            "/api/v1/tickets?school=xhsy&state=closed&category=food_water",
            Some(BUREAU_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1);
    let (_, list) = gw
        .get_json("/api/v1/tickets", Some(OTHER_SCHOOL_TOKEN))
        .await;
    assert!(list["tickets"].as_array().unwrap().is_empty());
    assert_eq!(
        gw.get_json("/api/v1/tickets?state=bogus", Some(BUREAU_TOKEN))
            .await
            .0,
        400
    );

    let (status, stats) = gw
        .get_json("/api/v1/stats/tickets?by=school", Some(BUREAU_TOKEN))
        .await;
    assert_eq!(status, 200);
    assert_eq!(stats["schools"][0]["closed_this_month"], 1, "{stats}");

    let month = {
        let now = campusguard::model::now_ms();
        let (y, m, _) = campusguard::tickets::time::local_date(now, 8 * 3_600_000);
        format!("{y:04}-{m:02}")
    };
    let resp = reqwest::Client::new()
        .get(gw.url(&format!(
            "/api/v1/tickets/export?month={month}&format=csv&lang=en"
        )))
        .bearer_auth(BUREAU_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.bytes().await.unwrap();
    assert!(body.starts_with(&[0xEF, 0xBB, 0xBF]));
    assert!(String::from_utf8_lossy(&body).contains(&id));
    gw.stop().await;
}
