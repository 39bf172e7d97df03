//! Actions wired to rules, end to end: a whole gateway polls a simulated chemical cabinet
//! (`campusguard_sim::modbus`, a real Modbus TCP peer) whose profile's gas rule names the action
//! `exhaust_fan_on`. The ventilation-failure scenario stops the fan and lets the gas rise; the
//! gas alarm runs the action, which writes coil 0 on the peer and so restarts the fan. A second
//! test puts a proxy in front of the cabinet that swallows writes (a device that never answers
//! them): the failed write is journaled and raises a `fault` alarm, which clears when a later
//! run succeeds. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use campusguard_sim::modbus::{Behaviour, Scenario};
use serde_json::{json, Value};
use support::{AlarmStream, Setup, TestGateway, OPERATOR_TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::client::Reader;
use tokio_util::sync::CancellationToken;

/// Upper bound of one wait. The gas (lel_pct) rises 0.5 %LEL/s from 1.5 in the scenario, so the
/// test profile's 3 %LEL warning is reached about 3 s after the scenario starts.
const WAIT: Duration = Duration::from_secs(20);
const FAULT_RULE: &str = "action_failed:exhaust_fan_on";

struct Sim {
    address: SocketAddr,
    behaviour: Arc<Behaviour>,
    shutdown: CancellationToken,
}

impl Sim {
    async fn start() -> Sim {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let behaviour = Arc::new(Behaviour::new(false));
        let shutdown = CancellationToken::new();
        tokio::spawn(campusguard_sim::modbus::serve(
            listener,
            1,
            behaviour.clone(),
            shutdown.clone(),
        ));
        Sim {
            address,
            behaviour,
            shutdown,
        }
    }

    /// Coil 0 (the fan command) of unit 1, read by a Modbus client of its own.
    async fn read_fan_coil(&self) -> bool {
        let mut ctx =
            tokio_modbus::client::tcp::connect_slave(self.address, tokio_modbus::Slave(1))
                .await
                .unwrap();
        let coils = tokio::time::timeout(WAIT, ctx.read_coils(0, 1))
            .await
            .expect("coil read answered")
            .expect("coil read transport")
            .expect("coil read not an exception");
        coils[0]
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A Modbus TCP proxy that forwards everything, except that while `drop_writes` is set it
/// swallows write requests (FC 5, 6, 15, 16): the client never gets an answer.
struct WriteDroppingProxy {
    address: SocketAddr,
    drop_writes: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl WriteDroppingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let drop_writes = Arc::new(AtomicBool::new(true));
        let flag = drop_writes.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_rd, mut client_wr) = client.into_split();
                    let (mut server_rd, mut server_wr) = server.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
                    });
                    // Requests, one MBAP frame at a time: 7-byte header (length at 4..6
                    // counts the unit id and the PDU), then the PDU.
                    loop {
                        let mut header = [0u8; 7];
                        if client_rd.read_exact(&mut header).await.is_err() {
                            break;
                        }
                        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
                        let mut pdu = vec![0u8; len.saturating_sub(1)];
                        if client_rd.read_exact(&mut pdu).await.is_err() {
                            break;
                        }
                        let is_write = matches!(pdu.first(), Some(5 | 6 | 15 | 16));
                        if is_write && flag.load(Ordering::SeqCst) {
                            continue;
                        }
                        if server_wr.write_all(&header).await.is_err()
                            || server_wr.write_all(&pdu).await.is_err()
                        {
                            break;
                        }
                    }
                    answers.abort();
                });
            }
        });
        Self {
            address,
            drop_writes,
            task,
        }
    }
}

impl Drop for WriteDroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The gateway config's Modbus part: cabinet `cab-1` (unit 1 at `address`, profile
/// `test_cabinet` whose `lel_high` names `exhaust_fan_on`) and its action: coil 0 = true.
fn cabinet_toml(address: SocketAddr) -> String {
    format!(
        r#"
[[modbus.devices]]
id = "cab-1"
school = "xhsy"
profile = "test_cabinet"
transport = "tcp"
address = "{address}"
unit = 1
interval = "100ms"
timeout = "300ms"
points = [
  {{ name = "temp_c", table = "holding", address = 0, type = "f32", order = "CDAB" }},
  {{ name = "rh_pct", table = "holding", address = 2, type = "f32" }},
  {{ name = "lel_pct", table = "holding", address = 4, type = "i32", scale = 0.001 }},
  {{ name = "voc_ppm", table = "holding", address = 6, type = "u16", scale = 0.01 }},
  {{ name = "airflow_mps", table = "holding", address = 7, type = "u16", scale = 0.01 }},
  {{ name = "fan_on", table = "coil", address = 0, type = "bool" }},
  {{ name = "door_open", table = "discrete", address = 0, type = "bool" }},
]

[[modbus.actions]]
name = "exhaust_fan_on"
device = "cab-1"
table = "coil"
address = 0
value = true
"#
    )
}

async fn start_gateway(tag: &str, dir: &std::path::Path, address: SocketAddr) -> TestGateway {
    let mut setup = Setup::mosquitto(tag, dir);
    setup.extra_toml = cabinet_toml(address);
    TestGateway::start(&setup).await
}

fn is(event: &Value, transition: &str, rule: &str) -> bool {
    event["transition"] == transition && event["rule"] == rule
}

/// The journal of alarm `id` from `GET /api/v1/alarms/{id}`.
async fn journal(gw: &TestGateway, id: u64) -> Vec<Value> {
    let (status, body) = gw
        .get_json(&format!("/api/v1/alarms/{id}"), Some(OPERATOR_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    body["journal"].as_array().cloned().unwrap_or_default()
}

fn transitions(journal: &[Value]) -> Vec<&str> {
    journal
        .iter()
        .map(|e| e["transition"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn a_gas_alarm_switches_the_exhaust_fan_on_and_the_journal_shows_it() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway("wb-ok", dir.path(), sim.address).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;

    // The fan stops and the gas rises.
    sim.behaviour.set_scenario(Scenario::VentilationFailure);
    assert!(!sim.read_fan_coil().await, "the fan is off in the scenario");
    let raised = stream
        .next_matching(WAIT, |e| is(e, "raised", "lel_high"))
        .await;
    let id = raised["id"].as_u64().unwrap();
    assert_eq!(raised["class"], "gas");
    assert_eq!(raised["sensor"], "xhsy/cab-1/lel_pct");

    // The action's result comes back as an `action` note on the same alarm, live.
    let note = stream
        .next_matching(WAIT, |e| is(e, "action", "lel_high"))
        .await;
    assert_eq!(note["id"].as_u64(), Some(id));
    let comment = note["comment"].as_str().unwrap();
    assert!(
        comment.starts_with("exhaust_fan_on: writing coil 0 = true of unit 1 via 127.0.0.1:"),
        "{comment}"
    );

    // The peer was written: its coil reads true to another client, and the fan runs again.
    assert!(sim.read_fan_coil().await, "coil 0 written on the peer");
    assert!(sim.behaviour.values(1).fan_on);
    // The gateway polls the effect: the gas falls back and the latched alarm returns to normal.
    stream
        .next_matching(WAIT, |e| is(e, "returned_to_normal", "lel_high"))
        .await;

    let journal = journal(&gw, id).await;
    assert_eq!(
        transitions(&journal),
        ["raised", "action", "returned_to_normal"],
        "{journal:#?}"
    );
    assert_eq!(journal[1]["user"], "system");
    assert_eq!(journal[1]["comment"].as_str(), Some(comment));

    assert_eq!(gw.metric("campusguard_modbus_writes_total").await, 1.0);
    assert_eq!(
        gw.metric("campusguard_modbus_failed_writes_total").await,
        0.0
    );
    let (_, open) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
    assert!(
        open.as_array()
            .unwrap()
            .iter()
            .all(|a| a["rule"] != FAULT_RULE),
        "no action fault: {open}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_write_the_device_never_answers_raises_a_fault_that_a_later_good_run_clears() {
    let sim = Sim::start().await;
    let proxy = WriteDroppingProxy::start(sim.address).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway("wb-fail", dir.path(), proxy.address).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;

    sim.behaviour.set_scenario(Scenario::VentilationFailure);
    let raised = stream
        .next_matching(WAIT, |e| is(e, "raised", "lel_high"))
        .await;
    let gas_id = raised["id"].as_u64().unwrap();
    let note = stream
        .next_matching(WAIT, |e| is(e, "action", "lel_high"))
        .await;
    let comment = note["comment"].as_str().unwrap();
    assert!(
        comment.starts_with("exhaust_fan_on failed: ")
            && comment.contains("no answer to writing coil 0 = true of unit 1 within 300ms"),
        "{comment}"
    );
    let fault = stream
        .next_matching(WAIT, |e| is(e, "raised", FAULT_RULE))
        .await;
    assert_eq!(fault["class"], "fault");
    assert_eq!(fault["sensor"], "xhsy/cab-1/status");
    assert!(
        fault["message"]
            .as_str()
            .unwrap()
            .contains("action `exhaust_fan_on` failed"),
        "{fault}"
    );
    let fault_id = fault["id"].as_u64().unwrap();
    // Nothing reached the peer: the fan is still off.
    assert!(!sim.read_fan_coil().await);
    assert_eq!(
        transitions(&journal(&gw, gas_id).await),
        ["raised", "action"]
    );
    assert_eq!(transitions(&journal(&gw, fault_id).await), ["raised"]);
    assert_eq!(
        gw.metric("campusguard_modbus_failed_writes_total").await,
        1.0
    );

    // The device answers writes again. The gas clears by itself (scenario over), the latched
    // alarm is reset, and the next gas alarm runs the action again: it succeeds and the fault
    // clears.
    proxy.drop_writes.store(false, Ordering::SeqCst);
    sim.behaviour.set_scenario(Scenario::Normal);
    stream
        .next_matching(WAIT, |e| is(e, "returned_to_normal", "lel_high"))
        .await;
    let (status, body) = gw
        .post_json(
            &format!("/api/v1/alarms/{gas_id}/reset"),
            Some(OPERATOR_TOKEN),
            json!({"comment": "fan restarted by hand"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sim.behaviour.set_scenario(Scenario::VentilationFailure);
    let again = stream
        .next_matching(WAIT, |e| is(e, "raised", "lel_high"))
        .await;
    assert_ne!(again["id"].as_u64(), Some(gas_id), "a new alarm");
    let note = stream
        .next_matching(WAIT, |e| is(e, "action", "lel_high"))
        .await;
    assert!(
        note["comment"]
            .as_str()
            .unwrap()
            .starts_with("exhaust_fan_on: writing coil 0 = true"),
        "{note}"
    );
    let cleared = stream
        .next_matching(WAIT, |e| is(e, "cleared", FAULT_RULE))
        .await;
    assert_eq!(cleared["id"].as_u64(), Some(fault_id));
    assert!(sim.read_fan_coil().await, "coil 0 written on the peer");
    assert_eq!(
        transitions(&journal(&gw, fault_id).await),
        ["raised", "cleared"]
    );
    assert_eq!(gw.metric("campusguard_modbus_writes_total").await, 1.0);
    assert_eq!(
        gw.metric("campusguard_modbus_failed_writes_total").await,
        1.0
    );
    gw.stop().await;
}
