//! `campusguard backup` while the gateway takes 5,000 readings/s over the shared Mosquitto: the
//! copies open, pass `PRAGMA integrity_check`, and hold the alarms raised before the backup
//! started; the load kept flowing during it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use campusguard_sim::campus::Profile;
use campusguard_sim::load::{load, LoadConfig};
use rumqttc::QoS;
use support::{mosquitto_port, unique, Device, Setup, TestGateway, OPERATOR_TOKEN};
use tokio_util::sync::CancellationToken;

const FIRES: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_is_consistent_and_holds_the_alarms_raised_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = TestGateway::start(&Setup::mosquitto("backup", &data)).await;

    // Alarms raised before the backup: one fire per room.
    let device = Device::connect(mosquitto_port(), &unique("backup-dev")).await;
    for i in 0..FIRES {
        let meta = gw.topic("s1", &format!("room-{i}"), "meta");
        device.publish(&meta, r#"{"profile":"test_room"}"#).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..FIRES {
        let telemetry = gw.topic("s1", &format!("room-{i}"), "telemetry");
        device.publish(&telemetry, r#"{"temp_c":80.0}"#).await;
    }
    support::eventually("the fire alarms", Duration::from_secs(10), || async {
        let (_, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
        let fires = alarms.to_string().matches("temp_fire").count();
        (fires >= FIRES).then_some(())
    })
    .await;
    // The journal reaches the store before the broadcast, but give the history writer a turn.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 5,000 readings/s (7-point chemical cabinets) for 8 s.
    let stop = CancellationToken::new();
    let load_config = LoadConfig {
        port: mosquitto_port(),
        client_id: unique("backup-load"),
        topic_prefix: gw.prefix.clone(),
        school: "load".into(),
        devices: 100,
        profile: Some(Profile::ChemCabinet),
        rate: 5000.0,
        duration: Some(Duration::from_secs(8)),
        qos: QoS::AtMostOnce,
        ..LoadConfig::default()
    };
    let load_task = tokio::spawn(load(load_config, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = gw
        .metric("campusguard_readings_total{source=\"mqtt\"}")
        .await;

    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[storage]\ndata_dir = \"{}\"\n", data.display()),
    )
    .unwrap();
    let to = dir.path().join("backup");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_campusguard"))
        .args(["backup", "--config"])
        .arg(&config)
        .arg("--to")
        .arg(&to)
        .output()
        .await
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("campusguard.db") && printed.contains("integrity_check ok"));
    let after = gw
        .metric("campusguard_readings_total{source=\"mqtt\"}")
        .await;
    let report = load_task.await.unwrap().unwrap();
    eprintln!("load: {report}");
    assert!(
        report.achieved_readings_per_s > 4000.0,
        "the load ran near 5,000/s: {}",
        report.achieved_readings_per_s
    );
    assert!(after > before, "readings kept flowing during the backup");

    // The copies, checked on their own.
    for name in ["campusguard.db", "history.db", "tickets.db"] {
        let copy = rusqlite::Connection::open(to.join(name)).unwrap();
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "{name}");
        assert!(!to.join(format!("{name}-wal")).exists());
    }
    let copy = rusqlite::Connection::open(to.join("campusguard.db")).unwrap();
    let fires: i64 = copy
        .query_row(
            "SELECT count(*) FROM alarms WHERE rule = 'temp_fire' AND school = 's1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fires, FIRES as i64, "the alarms raised before the backup");
    let journaled: i64 = copy
        .query_row("SELECT count(*) FROM alarm_journal", [], |r| r.get(0))
        .unwrap();
    assert!(journaled >= FIRES as i64);

    // A second backup into the same directory is refused, not written over.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_campusguard"))
        .args(["backup", "--config"])
        .arg(&config)
        .arg("--to")
        .arg(&to)
        .output()
        .unwrap();
    assert!(!again.status.success());
    stop.cancel();
    gw.stop().await;
}
