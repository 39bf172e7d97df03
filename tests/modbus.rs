//! Modbus ingest against real peers: the poller (`campusguard::ingest::modbus`) polls the
//! simulated cabinets (`campusguard_sim::modbus`) over TCP and RTU-over-TCP, a pymodbus server
//! (an independent implementation), and the simulator is read by `mbpoll`. Fault paths:
//! exception answers, a stalled unit, a closed port. Every wait is bounded.
//!
//! Needs `python3` with pymodbus (`$CAMPUSGUARD_TEST_PYTHON`, which scripts/test points at a venv
//! with `pymodbus==3.16.1`) and `mbpoll`
//! (`apt-get install -y mbpoll`); the tests that need them say so and skip when they are missing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use campusguard::ingest::modbus::{self, ModbusConfig, ModbusStats};
use campusguard::model::{DeviceKey, IngestEvent, Source, Value};
use campusguard_sim::modbus::{Behaviour, UnitFault};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

const EXAMPLE: &str = include_str!("../config/modbus-sim.example.toml");
/// Upper bound of any single wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

fn parse(text: &str) -> ModbusConfig {
    #[derive(serde::Deserialize)]
    struct Root {
        modbus: ModbusConfig,
    }
    let config = toml::from_str::<Root>(text)
        .expect("test config parses")
        .modbus;
    assert_eq!(config.validate(), Vec::<String>::new());
    config
}

/// The documented example config, pointed at `address`, polling every `interval`.
fn example_config(address: SocketAddr, interval: &str) -> ModbusConfig {
    parse(
        &EXAMPLE
            .replace("127.0.0.1:5020", &address.to_string())
            .replace("interval = \"1s\"", &format!("interval = \"{interval}\"")),
    )
}

struct Sim {
    address: SocketAddr,
    behaviour: Arc<Behaviour>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Sim {
    async fn start(units: u8) -> Sim {
        Self::start_on(
            TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            units,
            false,
        )
    }

    fn start_on(listener: TcpListener, units: u8, rtu_over_tcp: bool) -> Sim {
        let address = listener.local_addr().expect("local addr");
        let behaviour = Arc::new(Behaviour::new(false));
        let shutdown = CancellationToken::new();
        let task = if rtu_over_tcp {
            tokio::spawn(campusguard_sim::modbus::serve_rtu_over_tcp(
                listener,
                units,
                behaviour.clone(),
                shutdown.clone(),
            ))
        } else {
            tokio::spawn(campusguard_sim::modbus::serve(
                listener,
                units,
                behaviour.clone(),
                shutdown.clone(),
            ))
        };
        Sim {
            address,
            behaviour,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        timeout(WAIT, self.task)
            .await
            .expect("simulator stops")
            .expect("simulator task")
            .expect("simulator result");
    }
}

struct Poller {
    events: mpsc::Receiver<IngestEvent>,
    stats: Arc<ModbusStats>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Poller {
    fn start(config: ModbusConfig) -> Poller {
        let (tx, events) = mpsc::channel(64);
        let stats = Arc::new(ModbusStats::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(modbus::run(
            config,
            tx,
            stats.clone(),
            None,
            shutdown.clone(),
        ));
        Poller {
            events,
            stats,
            shutdown,
            task,
        }
    }

    async fn next_event(&mut self, until: Instant) -> Option<IngestEvent> {
        tokio::time::timeout_at(until, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next poll cycle's values of `device`, as `point -> value`.
    async fn next_values(&mut self, device: &str) -> HashMap<String, Value> {
        let until = Instant::now() + WAIT;
        while let Some(event) = self.next_event(until).await {
            if let IngestEvent::Readings(readings) = event {
                if readings
                    .first()
                    .is_some_and(|r| &*r.sensor.device == device)
                {
                    return readings
                        .into_iter()
                        .map(|r| {
                            assert_eq!(r.source, Source::Modbus);
                            (r.sensor.point.to_string(), r.value)
                        })
                        .collect();
                }
            }
        }
        panic!("no readings of {device} within {WAIT:?}");
    }

    /// Waits for a status event of `device`; returns `online`.
    async fn next_status(&mut self, device: &str) -> bool {
        let until = Instant::now() + WAIT;
        while let Some(event) = self.next_event(until).await {
            if let IngestEvent::Status {
                device: key,
                online,
                ..
            } = event
            {
                if &*key.device == device {
                    return online;
                }
            }
        }
        panic!("no status of {device} within {WAIT:?}");
    }

    async fn stop(self) -> Arc<ModbusStats> {
        self.shutdown.cancel();
        // The poller stops promptly even while the pipeline is not being drained.
        timeout(Duration::from_secs(3), self.task)
            .await
            .expect("poller stops within 3 s of shutdown")
            .expect("poller task");
        self.stats
    }
}

fn number(values: &HashMap<String, Value>, point: &str) -> f64 {
    match values.get(point) {
        Some(Value::Number(v)) => *v,
        other => panic!("{point}: expected a number, got {other:?} in {values:?}"),
    }
}

fn boolean(values: &HashMap<String, Value>, point: &str) -> bool {
    match values.get(point) {
        Some(Value::Bool(b)) => *b,
        other => panic!("{point}: expected a bool, got {other:?} in {values:?}"),
    }
}

/// The documented baseline of cabinet `unit` (noise off), as the poller must decode it.
fn assert_documented_baseline(values: &HashMap<String, Value>, unit: u8) {
    assert_eq!(values.len(), 7, "{values:?}");
    assert_eq!(number(values, "temp_c"), 21.0 + 0.5 * f64::from(unit));
    assert_eq!(number(values, "rh_pct"), 45.25);
    assert_eq!(number(values, "lel_pct"), 1500.0 * 0.001);
    assert_eq!(number(values, "voc_ppm"), 42.0 * 0.01);
    assert_eq!(number(values, "airflow_mps"), 65.0 * 0.01);
    assert!(boolean(values, "fan_on"));
    assert!(!boolean(values, "door_open"));
}

#[tokio::test]
async fn the_poller_decodes_the_documented_values_the_simulator_serves() {
    let sim = Sim::start(2).await;
    let mut poller = Poller::start(example_config(sim.address, "100ms"));
    // Both cabinets share one connection; each reports online once, then its values.
    let mut online = Vec::new();
    let mut seen = HashMap::new();
    let until = Instant::now() + WAIT;
    while seen.len() < 2 {
        match poller
            .next_event(until)
            .await
            .expect("events within the wait")
        {
            IngestEvent::Status {
                device, online: o, ..
            } => online.push((device, o)),
            IngestEvent::Readings(readings) => {
                let device = readings[0].sensor.device.to_string();
                assert!(readings.iter().all(|r| r.sensor.school.as_ref() == "xhsy"));
                seen.insert(device, readings);
            }
            IngestEvent::Meta { .. } | IngestEvent::Batch { .. } => {
                panic!("the poller sends no meta and no batches (acks ride only in MQTT batches)")
            }
        }
    }
    online.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        online,
        vec![
            (DeviceKey::new("xhsy", "cab-1"), true),
            (DeviceKey::new("xhsy", "cab-2"), true)
        ]
    );
    assert_documented_baseline(&poller.next_values("cab-1").await, 1);
    assert_documented_baseline(&poller.next_values("cab-2").await, 2);

    // The scenario shows up in the polled values.
    sim.behaviour
        .set_scenario(campusguard_sim::modbus::Scenario::VentilationFailure);
    let until = Instant::now() + WAIT;
    loop {
        let values = poller.next_values("cab-1").await;
        if !boolean(&values, "fan_on") {
            assert_eq!(number(&values, "airflow_mps"), 0.0);
            break;
        }
        assert!(Instant::now() < until, "ventilation failure not seen");
    }
    let stats = poller.stop().await.snapshot();
    assert_eq!(
        stats.timeouts + stats.exceptions + stats.decode_errors,
        0,
        "{stats:?}"
    );
    assert_eq!(stats.reconnects, 0, "{stats:?}");
    sim.stop().await;
}

#[tokio::test]
async fn coalescing_reads_each_cabinet_in_one_request_per_table_per_cycle() {
    let sim = Sim::start(2).await;
    let full = example_config(sim.address, "50ms");
    for (index, requests_per_cycle) in [(0usize, 3u64), (1, 1)] {
        // cab-1 reads holding 0..8, coil 0, discrete 0: 3 requests for 7 points.
        // cab-2 reads everything from holding 0..9: 1 request for 7 points.
        let mut config = full.clone();
        config.devices = vec![full.devices[index].clone()];
        let id = config.devices[0].id.clone();
        let mut poller = Poller::start(config);
        for _ in 0..5 {
            poller.next_values(&id).await;
        }
        let stats = poller.stop().await.snapshot();
        assert!(stats.polls >= 5, "{stats:?}");
        assert_eq!(
            stats.requests,
            stats.polls * requests_per_cycle,
            "{id}: {stats:?}"
        );
        assert_eq!(stats.responses, stats.requests, "{stats:?}");
        assert_eq!(stats.failed_polls, 0, "{stats:?}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn rtu_over_tcp_reads_the_same_documented_values() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let sim = Sim::start_on(listener, 2, true);
    let config = example_config(sim.address, "100ms");
    let text = EXAMPLE
        .replace("127.0.0.1:5020", &sim.address.to_string())
        .replace("transport = \"tcp\"", "transport = \"rtu_over_tcp\"");
    let config_rtu = parse(&text);
    assert_eq!(config.devices.len(), config_rtu.devices.len());
    let mut poller = Poller::start(config_rtu);
    assert_documented_baseline(&poller.next_values("cab-1").await, 1);
    assert_documented_baseline(&poller.next_values("cab-2").await, 2);
    poller.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn exception_answers_turn_the_device_offline_and_it_recovers_by_itself() {
    let sim = Sim::start(1).await;
    let mut config = example_config(sim.address, "50ms");
    config.devices.truncate(1);
    config.offline_after = 2;
    config.max_backoff = Duration::from_millis(200);
    let mut poller = Poller::start(config);
    assert!(poller.next_status("cab-1").await, "online first");
    // Device busy on every request.
    sim.behaviour.set_fault(1, Some(UnitFault::Exception(6)));
    assert!(
        !poller.next_status("cab-1").await,
        "offline after exceptions"
    );
    let during = poller.stats.snapshot();
    assert!(during.exceptions >= 2, "{during:?}");
    assert_eq!(
        during.timeouts, 0,
        "exceptions are not timeouts: {during:?}"
    );
    sim.behaviour.set_fault(1, None);
    assert!(poller.next_status("cab-1").await, "online again");
    assert_documented_baseline(&poller.next_values("cab-1").await, 1);
    poller.stop().await;
    sim.stop().await;
}

/// Largest gap between consecutive readings of `device` over `window`.
async fn max_reading_gap(poller: &mut Poller, device: &str, window: Duration) -> (Duration, usize) {
    let end = Instant::now() + window;
    let mut last: Option<Instant> = None;
    let mut max_gap = Duration::ZERO;
    let mut count = 0;
    while let Some(event) = poller.next_event(end).await {
        if let IngestEvent::Readings(readings) = event {
            if readings
                .first()
                .is_some_and(|r| &*r.sensor.device == device)
            {
                let now = Instant::now();
                if let Some(previous) = last {
                    max_gap = max_gap.max(now - previous);
                }
                last = Some(now);
                count += 1;
            }
        }
    }
    (max_gap, count)
}

#[tokio::test]
async fn a_stalled_unit_does_not_delay_a_unit_on_another_connection() {
    let stalled = Sim::start(1).await;
    let healthy = Sim::start(1).await;
    stalled.behaviour.set_fault(1, Some(UnitFault::Stall));
    let mut config = example_config(stalled.address, "100ms");
    config.devices.truncate(1);
    config.devices[0].timeout = Duration::from_millis(500);
    let mut other = config.devices[0].clone();
    other.id = "cab-other".into();
    other.address = Some(healthy.address.to_string());
    config.devices.push(other);
    let mut poller = Poller::start(config);
    let (max_gap, count) =
        max_reading_gap(&mut poller, "cab-other", Duration::from_millis(2000)).await;
    eprintln!("healthy device on another connection: {count} cycles in 2 s, max gap {max_gap:?}");
    // 100 ms interval: about 20 cycles, never held up by the 500 ms timeouts next door
    // (the bound leaves room for a loaded CI machine).
    assert!(count >= 15, "only {count} cycles of the healthy device");
    assert!(max_gap < Duration::from_millis(300), "gap {max_gap:?}");
    let stats = poller.stop().await.snapshot();
    assert!(stats.timeouts >= 2, "{stats:?}");
    // After each timeout the stale connection is replaced (tokio-modbus #324).
    assert!(stats.reconnects >= 1, "{stats:?}");
    stalled.stop().await;
    healthy.stop().await;
}

#[tokio::test]
async fn a_stalled_unit_costs_its_neighbour_on_the_same_line_at_most_its_timeout() {
    let sim = Sim::start(2).await;
    sim.behaviour.set_fault(1, Some(UnitFault::Stall));
    let mut config = example_config(sim.address, "100ms");
    for device in &mut config.devices {
        device.timeout = Duration::from_millis(200);
    }
    let mut poller = Poller::start(config);
    assert!(
        !poller.next_status("cab-1").await,
        "the stalled unit goes offline"
    );
    let (max_gap, count) = max_reading_gap(&mut poller, "cab-2", Duration::from_millis(2000)).await;
    eprintln!("neighbour of a stalled unit: {count} cycles in 2 s, max gap {max_gap:?}");
    // Interval 100 ms + at most one 200 ms timeout (plus reconnect) of the stalled unit; one
    // timeout per read of its three reads would be 700 ms.
    assert!(max_gap < Duration::from_millis(550), "gap {max_gap:?}");
    // The stalled unit is backed off, so cab-2 keeps most of its cycles.
    assert!(count >= 10, "only {count} cycles of cab-2");
    poller.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_closed_port_turns_the_device_offline_and_it_comes_back_online() {
    // A port that nobody listens on (bound, then released).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    drop(listener);
    let mut config = example_config(address, "50ms");
    config.devices.truncate(1);
    config.max_backoff = Duration::from_millis(200);
    let mut poller = Poller::start(config);
    assert!(
        !poller.next_status("cab-1").await,
        "offline after refused connects"
    );
    assert!(poller.stats.snapshot().connect_errors >= 3);
    let listener = TcpListener::bind(address)
        .await
        .expect("rebind the same port");
    let sim = Sim::start_on(listener, 1, false);
    assert!(
        poller.next_status("cab-1").await,
        "online when the server is back"
    );
    assert_documented_baseline(&poller.next_values("cab-1").await, 1);
    // The server goes away again: offline again.
    sim.stop().await;
    assert!(
        !poller.next_status("cab-1").await,
        "offline after the server stopped"
    );
    poller.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The Python with pymodbus: `CAMPUSGUARD_TEST_PYTHON` (scripts/test points it at a virtual
/// environment, since Debian's system Python refuses `pip install`), else `python3`.
fn python() -> String {
    std::env::var("CAMPUSGUARD_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn have_pymodbus() -> bool {
    std::process::Command::new(python())
        .args(["-c", "import pymodbus"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn values_from_a_pymodbus_server_decode_exactly() {
    if !have_pymodbus() {
        eprintln!(
            "SKIPPED: python3 with pymodbus is missing (python3 -m pip install 'pymodbus==3.16.1')"
        );
        return;
    }
    let port = free_port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/modbus_pymodbus_server.py"
    );
    let mut server = tokio::process::Command::new(python())
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the pymodbus server");
    let until = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < until, "pymodbus server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = parse(&format!(
        r#"
        [modbus]
        [[modbus.devices]]
        id = "py"
        school = "lab"
        transport = "tcp"
        address = "127.0.0.1:{port}"
        unit = 1
        interval = "100ms"
        points = [
          {{ name = "f32_cdab", table = "holding", address = 0, type = "f32", order = "CDAB" }},
          {{ name = "f32_abcd", table = "holding", address = 2, type = "f32", order = "ABCD" }},
          {{ name = "i32", table = "holding", address = 4, type = "i32" }},
          {{ name = "u16_scaled", table = "holding", address = 6, type = "u16", scale = 0.1 }},
          {{ name = "u32_cdab", table = "holding", address = 7, type = "u32", order = "CDAB" }},
          {{ name = "i16_offset", table = "holding", address = 9, type = "i16", scale = 0.1, offset = 100.0 }},
          {{ name = "input_f32", table = "input", address = 0, type = "f32" }},
          {{ name = "nan", table = "holding", address = 10, type = "f32" }},
          {{ name = "input_far", table = "input", address = 10, type = "u16" }},
          {{ name = "coil0", table = "coil", address = 0, type = "bool" }},
          {{ name = "coil1", table = "coil", address = 1, type = "bool" }},
          {{ name = "coil3", table = "coil", address = 3, type = "bool" }},
          {{ name = "di1", table = "discrete", address = 1, type = "bool" }},
        ]
        "#
    ));
    let mut poller = Poller::start(config);
    let values = poller.next_values("py").await;
    assert_eq!(number(&values, "f32_cdab"), f64::from(123.456f32));
    assert_eq!(number(&values, "f32_abcd"), -7.25);
    assert_eq!(number(&values, "i32"), -123456.0);
    assert_eq!(number(&values, "u16_scaled"), 2345.0 * 0.1);
    assert_eq!(number(&values, "u32_cdab"), 3_000_000_000.0);
    assert_eq!(number(&values, "i16_offset"), -300.0 * 0.1 + 100.0);
    assert_eq!(number(&values, "input_f32"), 0.5);
    assert!(boolean(&values, "coil0"));
    assert!(!boolean(&values, "coil1"));
    assert!(boolean(&values, "coil3"));
    assert!(boolean(&values, "di1"));
    // NaN is no value: counted and left out, while the other points still arrive and the
    // device stays healthy.
    assert!(!values.contains_key("nan"), "{values:?}");
    // input 0..11 bridges unmapped registers; pymodbus refuses that read once, and the poller
    // reads input 0..2 and 10 separately from then on, within the same cycle.
    assert_eq!(number(&values, "input_far"), 77.0);
    assert_eq!(values.len(), 12, "{values:?}");
    poller.next_values("py").await;
    let stats = poller.stop().await.snapshot();
    assert!(stats.decode_errors >= 1, "{stats:?}");
    assert_eq!(stats.exceptions, 1, "{stats:?}");
    assert_eq!(stats.failed_polls, 0, "{stats:?}");
    // coils 0..4, discrete 1, holding 0..12, input 0..2, input 10: five requests per cycle,
    // plus the one refused read.
    assert_eq!(stats.requests, stats.polls * 5 + 1, "{stats:?}");
    let _ = server.kill().await;
}

/// Runs mbpoll once against the simulator; returns the `[ref]: value` lines as (ref, text).
async fn mbpoll(port: u16, unit: u8, args: &[&str]) -> Vec<(u32, String)> {
    let output = timeout(
        WAIT,
        tokio::process::Command::new("mbpoll")
            .args([
                "-1",
                "-m",
                "tcp",
                "-p",
                &port.to_string(),
                "-a",
                &unit.to_string(),
            ])
            .args(args)
            .arg("127.0.0.1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("mbpoll finishes")
    .expect("mbpoll runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "mbpoll {args:?}: {stdout}");
    stdout
        .lines()
        .filter_map(|line| {
            let (reference, value) = line.trim().strip_prefix('[')?.split_once("]:")?;
            Some((reference.parse().ok()?, value.trim().to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn mbpoll_reads_the_documented_registers_of_the_simulator() {
    if std::process::Command::new("mbpoll")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIPPED: mbpoll is missing (apt-get install -y mbpoll)");
        return;
    }
    let sim = Sim::start(2).await;
    let port = sim.address.port();
    // mbpoll counts references from 1 (reference = address + 1); its default float/int order
    // is little-endian words (our CDAB), `-B` is big-endian (our ABCD).
    let entry = |r: u32, v: &str| vec![(r, v.to_owned())];
    assert_eq!(
        mbpoll(port, 1, &["-t", "4:float", "-r", "1"]).await,
        entry(1, "21.5")
    );
    assert_eq!(
        mbpoll(port, 2, &["-t", "4:float", "-r", "1"]).await,
        entry(1, "22")
    );
    assert_eq!(
        mbpoll(port, 1, &["-t", "4:float", "-B", "-r", "3"]).await,
        entry(3, "45.25")
    );
    assert_eq!(
        mbpoll(port, 1, &["-t", "4:int", "-B", "-r", "5"]).await,
        entry(5, "1500")
    );
    assert_eq!(
        mbpoll(port, 1, &["-t", "4", "-r", "7", "-c", "4"]).await,
        vec![
            (7, "42".to_owned()),
            (8, "65".to_owned()),
            (9, "1".to_owned()),
            (10, "1".to_owned())
        ]
    );
    assert_eq!(
        mbpoll(port, 2, &["-t", "3", "-r", "10"]).await,
        entry(10, "2")
    );
    assert_eq!(
        mbpoll(port, 1, &["-t", "0", "-r", "1"]).await,
        entry(1, "1")
    );
    assert_eq!(
        mbpoll(port, 1, &["-t", "1", "-r", "1"]).await,
        entry(1, "0")
    );
    sim.stop().await;
}

#[tokio::test]
async fn rtu_over_a_pty_pair_reads_the_documented_values_of_two_units_on_one_line() {
    let have_socat = std::process::Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_socat {
        eprintln!("SKIPPED: socat is missing (apt-get install -y socat)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let sim_end = dir.path().join("sim");
    let gateway_end = dir.path().join("gateway");
    let mut socat = tokio::process::Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", sim_end.display()))
        .arg(format!("pty,raw,echo=0,link={}", gateway_end.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start socat");
    let until = Instant::now() + WAIT;
    while !(sim_end.exists() && gateway_end.exists()) {
        assert!(Instant::now() < until, "socat made no pty pair");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let behaviour = Arc::new(Behaviour::new(false));
    let shutdown = CancellationToken::new();
    let sim = tokio::spawn({
        let path = sim_end.to_string_lossy().into_owned();
        let (behaviour, shutdown) = (behaviour.clone(), shutdown.clone());
        async move { campusguard_sim::modbus::serve_rtu(&path, 9600, 2, behaviour, shutdown).await }
    });
    let text = EXAMPLE
        .replace(
            "transport = \"tcp\"",
            "transport = \"rtu\"\nbaud = 9600\nparity = \"N\"\nstop_bits = 1",
        )
        .replace(
            "address = \"127.0.0.1:5020\"",
            &format!("serial = \"{}\"", gateway_end.display()),
        )
        .replace("interval = \"1s\"", "interval = \"200ms\"");
    let mut poller = Poller::start(parse(&text));
    assert_documented_baseline(&poller.next_values("cab-1").await, 1);
    assert_documented_baseline(&poller.next_values("cab-2").await, 2);
    let stats = poller.stop().await.snapshot();
    assert_eq!(stats.timeouts, 0, "{stats:?}");
    shutdown.cancel();
    let _ = timeout(WAIT, sim).await.expect("RTU simulator stops");
    let _ = socat.kill().await;
}

/// CPU time (user + system) of the calling thread, from `/proc/thread-self/stat`.
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read thread stat");
    // Fields after the `(comm)`: state is field 3, utime 14 and stime 15 (in clock ticks).
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // Linux reports in USER_HZ, 100 per second on every common configuration.
    Duration::from_millis(ticks * 10)
}

/// The issue's benchmark: 200 simulated cabinets x 10 points at 1 s over TCP (10 simulator
/// ports x 20 unit ids) for `BENCH_SECS` (default 60) seconds. The poller runs alone on one
/// thread, so that thread's CPU time is the gateway's cost of Modbus ingest. Run with
/// `cargo test --release --test modbus -- --ignored --nocapture benchmark`.
#[test]
#[ignore = "benchmark, 60 s"]
fn benchmark_200_cabinets_of_10_points_every_second() {
    let seconds: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("simulator runtime");
    let sims: Vec<Sim> = sim_runtime.block_on(async {
        let mut sims = Vec::new();
        for _ in 0..10 {
            let sim = Sim::start(20).await;
            sim.behaviour.set_noise(true);
            sims.push(sim);
        }
        sims
    });
    let mut text = String::from("[modbus]\n");
    for (s, sim) in sims.iter().enumerate() {
        for unit in 1..=20 {
            text.push_str(&format!(
                r#"
                [[modbus.devices]]
                id = "cab-{s}-{unit}"
                school = "bench"
                profile = "chem_cabinet"
                transport = "tcp"
                address = "{}"
                unit = {unit}
                interval = "1s"
                timeout = "500ms"
                points = [
                  {{ name = "temp_c", table = "holding", address = 0, type = "f32", order = "CDAB" }},
                  {{ name = "rh_pct", table = "holding", address = 2, type = "f32", order = "ABCD" }},
                  {{ name = "lel_pct", table = "holding", address = 4, type = "i32", scale = 0.001 }},
                  {{ name = "voc_ppm", table = "holding", address = 6, type = "u16", scale = 0.01 }},
                  {{ name = "airflow_mps", table = "holding", address = 7, type = "u16", scale = 0.01 }},
                  {{ name = "fan_on", table = "holding", address = 8, type = "bool", bit = 0 }},
                  {{ name = "door_open", table = "holding", address = 8, type = "bool", bit = 1 }},
                  {{ name = "unit_id", table = "holding", address = 9, type = "u16" }},
                  {{ name = "spare_a", table = "holding", address = 10, type = "u16" }},
                  {{ name = "spare_b", table = "holding", address = 11, type = "i16" }},
                ]
                "#,
                sim.address
            ));
        }
    }
    let config = parse(&text);
    assert_eq!(config.devices.len(), 200);
    let gateway = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("poller runtime");
        runtime.block_on(async move {
            let (tx, mut rx) = mpsc::channel(1024);
            let stats = Arc::new(ModbusStats::default());
            let shutdown = CancellationToken::new();
            let readings = tokio::spawn(async move {
                let mut count = 0usize;
                while let Some(event) = rx.recv().await {
                    if let IngestEvent::Readings(r) = event {
                        count += r.len();
                    }
                }
                count
            });
            let cpu_start = thread_cpu_time();
            let started = Instant::now();
            let poller = tokio::spawn(modbus::run(
                config,
                tx,
                stats.clone(),
                None,
                shutdown.clone(),
            ));
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let cpu = thread_cpu_time() - cpu_start;
            let elapsed = started.elapsed();
            let snapshot = stats.snapshot();
            shutdown.cancel();
            poller.await.expect("poller");
            let readings = readings.await.expect("consumer");
            (cpu, elapsed, snapshot, readings)
        })
    });
    let (cpu, elapsed, stats, readings) = gateway.join().expect("gateway thread");
    sim_runtime.block_on(async {
        for sim in sims {
            sim.stop().await;
        }
    });
    let cycles_expected = 200 * seconds;
    println!(
        "modbus benchmark: 200 devices x 10 points @1s for {:.1} s: gateway CPU {:.1} % of one core \
         ({:.2} s), polls {} (expected ~{}), failed {}, requests per device cycle {:.2}, readings {}, \
         lateness p50 <= {:?} ms, p99 <= {:?} ms, max {} ms, timeouts {}",
        elapsed.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64(),
        cpu.as_secs_f64(),
        stats.polls,
        cycles_expected,
        stats.failed_polls,
        stats.requests as f64 / stats.polls.max(1) as f64,
        readings,
        stats.lateness_quantile_ms(0.5),
        stats.lateness_quantile_ms(0.99),
        stats.max_lateness_ms,
        stats.timeouts,
    );
    assert_eq!(stats.failed_polls, 0, "{stats:?}");
    assert_eq!(stats.requests, stats.polls, "one request per device cycle");
    assert!(stats.polls + 200 >= cycles_expected, "{stats:?}");
}

#[tokio::test]
async fn an_action_write_switches_the_fan_on_and_a_failed_write_is_reported() {
    let sim = Sim::start(2).await;
    sim.behaviour
        .set_scenario(campusguard_sim::modbus::Scenario::VentilationFailure);
    let text = format!(
        "{}{}",
        EXAMPLE
            .replace("127.0.0.1:5020", &sim.address.to_string())
            .replace("interval = \"1s\"", "interval = \"100ms\""),
        // The example config already has `exhaust_fan_on` (coil 0 = true) on cab-1 and cab-2.
        r#"
        [[modbus.actions]]
        name = "cab-1-setpoint"
        device = "cab-1"
        table = "holding"
        address = 10
        type = "f32"
        value = 12.5
        "#
    );
    let config = parse(&text);
    let (handle, writes) = modbus::write_channel();
    let (tx, events) = mpsc::channel(64);
    let stats = Arc::new(ModbusStats::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(modbus::run(
        config,
        tx,
        stats.clone(),
        Some(writes),
        shutdown.clone(),
    ));
    let mut poller = Poller {
        events,
        stats,
        shutdown,
        task,
    };
    let values = poller.next_values("cab-1").await;
    assert!(
        !boolean(&values, "fan_on"),
        "the fan is off in ventilation failure"
    );

    // Two cabinets have an action of that name: the write goes to the device named.
    let cab_1 = DeviceKey::new("xhsy", "cab-1");
    let report = timeout(WAIT, handle.write(&cab_1, "exhaust_fan_on"))
        .await
        .expect("write answered in time")
        .expect("write succeeds");
    assert_eq!(report.device, DeviceKey::new("xhsy", "cab-1"));
    assert!(report.description.contains("coil 0 = true"), "{report:?}");
    // The next cycles see the fan running again; cab-2 is untouched.
    let until = Instant::now() + WAIT;
    loop {
        let values = poller.next_values("cab-1").await;
        if boolean(&values, "fan_on") {
            assert_eq!(number(&values, "airflow_mps"), 0.65);
            break;
        }
        assert!(Instant::now() < until, "fan never came on");
    }
    assert!(!boolean(&poller.next_values("cab-2").await, "fan_on"));

    // The simulator refuses register writes: exception 2, reported as a failed action.
    match handle.write(&cab_1, "cab-1-setpoint").await {
        Err(modbus::WriteError::Failed { action, error, .. }) => {
            assert_eq!(action, "cab-1-setpoint");
            assert!(
                error
                    .to_string()
                    .contains("exception 2 (illegal data address)"),
                "{error}"
            );
        }
        other => panic!("expected a failed write, got {other:?}"),
    }
    assert!(matches!(
        handle.write(&cab_1, "no-such-action").await,
        Err(modbus::WriteError::NotOnDevice { .. })
    ));
    // An action of another device is not this device's.
    assert!(matches!(
        handle
            .write(&DeviceKey::new("xhsy", "cab-2"), "cab-1-setpoint")
            .await,
        Err(modbus::WriteError::NotOnDevice { .. })
    ));
    let stats = poller.stop().await.snapshot();
    assert_eq!((stats.writes, stats.failed_writes), (1, 1), "{stats:?}");
    // After shutdown the handle says so instead of hanging.
    assert!(matches!(
        timeout(WAIT, handle.write(&cab_1, "exhaust_fan_on")).await,
        Ok(Err(modbus::WriteError::NotRunning))
    ));
    sim.stop().await;
}
