//! A reading's whole way: MQTT → gateway → time-series store. Readings published through the
//! machine's Mosquitto arrive in a real InfluxDB 1.x, per measurement (profile) and tag set,
//! with exact values and timestamps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
#[path = "support/tsdb.rs"]
mod tsdb;

use std::time::Duration;

use support::*;
use tsdb::Influxd;

#[tokio::test]
async fn readings_published_over_mqtt_arrive_in_influxdb_1x_exactly() {
    let influx = Influxd::start().await;
    influx.create_database("campus").await;
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::mosquitto("tse2e", dir.path());
    setup.extra_toml = format!(
        "[timeseries]\nkind = \"influxdb1\"\nurl = \"{}\"\ndatabase = \"campus\"\nflush_interval = \"100ms\"\n",
        influx.url()
    );
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("dev")).await;
    dev.publish(
        &gw.topic("xhsy", "room-7", "meta"),
        r#"{"profile":"test_room","building":"A","room":"207"}"#,
    )
    .await;
    // An unregistered device too: it is stored under measurement `unknown`.
    const N: i64 = 200;
    let base = (campusguard::model::now_ms() / 1000 - 3600) * 1000;
    for i in 0..N {
        dev.publish(
            &gw.topic("xhsy", "room-7", "telemetry"),
            format!(
                r#"{{"ts":{},"temp_c":{},"door_open":{}}}"#,
                base + i * 1000,
                20.0 + i as f64 / 8.0,
                i % 3 == 0
            ),
        )
        .await;
        dev.publish(
            &gw.topic("xhsy", "stray-1", "telemetry"),
            format!(r#"{{"ts":{},"x":{i}}}"#, base + i * 1000),
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let count = |body: &serde_json::Value| -> i64 {
        body["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0)
    };
    loop {
        let temp = influx
            .query(
                "campus",
                "SELECT count(value) FROM test_room WHERE point = 'temp_c' AND school = 'xhsy' AND device = 'room-7' AND building = 'A' AND room = '207' AND source = 'mqtt'",
            )
            .await;
        let stray = influx
            .query(
                "campus",
                "SELECT count(value) FROM \"unknown\" WHERE device = 'stray-1'",
            )
            .await;
        if count(&temp) == N && count(&stray) == N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all readings arrived: temp_c {} stray {}",
            count(&temp),
            count(&stray)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Values and timestamps exactly as published.
    let rows = influx
        .query(
            "campus",
            "SELECT value FROM test_room WHERE point = 'temp_c' AND device = 'room-7' ORDER BY time",
        )
        .await;
    let values = rows["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap();
    assert_eq!(values.len() as i64, N);
    for (i, row) in values.iter().enumerate() {
        assert_eq!(row[0].as_i64().unwrap(), base + i as i64 * 1000);
        assert_eq!(row[1].as_f64().unwrap(), 20.0 + i as f64 / 8.0);
    }
    let doors = influx
        .query(
            "campus",
            "SELECT value FROM test_room WHERE point = 'door_open' AND device = 'room-7' ORDER BY time LIMIT 3",
        )
        .await;
    let first: Vec<_> = doors["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].clone())
        .collect();
    // Booleans go in as 1/0 (bool_encoding = "float"): InfluxDB fixes a field's type per
    // measurement, and a profile mixes numeric and boolean points.
    assert_eq!(
        first,
        [
            serde_json::json!(1),
            serde_json::json!(0),
            serde_json::json!(0)
        ]
    );
    assert!(
        gw.metric("campusguard_timeseries_lines_written_total")
            .await
            >= (3 * N) as f64
    );
    gw.stop().await;
}
