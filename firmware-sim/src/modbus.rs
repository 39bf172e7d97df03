//! Simulated Modbus chemical cabinets: a Modbus TCP (or RTU-over-TCP, or RTU on a serial port)
//! server answering for unit ids `1..=n`, one cabinet per unit, for the gateway's Modbus ingest
//! (`src/ingest/modbus`) to poll. Scenarios (`cabinet-overheat`, `ventilation-failure`) drive the
//! values; faults (exception answers, stalls without any answer) exercise the poller's fault
//! paths.
//!
//! # Register map (every unit, zero-based protocol addresses)
//!
//! Mixed data types and word orders on purpose. Baseline values are those served with noise off
//! and no scenario (`n` is the unit id); with noise on they wander a little around them.
//!
//! | table | address | point | type | order | scale | baseline |
//! |---|---|---|---|---|---|---|
//! | holding (FC3) | 0–1 | `temp_c` | f32 | CDAB | 1 | 21.0 + 0.5·n (21.5 for unit 1) |
//! | holding | 2–3 | `rh_pct` | f32 | ABCD | 1 | 45.25 |
//! | holding | 4–5 | `lel_pct` | i32 | ABCD | 0.001 | 1.5 (raw 1500) |
//! | holding | 6 | `voc_ppm` | u16 | – | 0.01 | 0.42 (raw 42) |
//! | holding | 7 | `airflow_mps` | u16 | – | 0.01 | 0.65 (raw 65); 0 while the fan is off |
//! | holding | 8 | status word | bits | – | – | bit 0 = `fan_on` (1), bit 1 = `door_open` (0) |
//! | holding | 9 | unit id | u16 | – | 1 | n |
//! | holding | 10–15 | reserved | u16 | – | – | 0 |
//! | input (FC4) | 0–15 | the same values as holding 0–15 (read-only mirror) | | | | |
//! | coil (FC1) | 0 | `fan_on` | bool | – | – | true; writable (FC5/FC15): the fan command |
//! | coil | 1–7 | reserved | bool | – | – | false |
//! | discrete (FC2) | 0 | `door_open` | bool | – | – | false |
//! | discrete | 1–7 | reserved | bool | – | – | false |
//!
//! Reads beyond these ranges answer exception 2 (illegal data address); writes to anything but
//! coil 0 answer exception 2 too. A unit id outside `1..=n` answers exception 11 (gateway
//! target device failed to respond) over TCP, as a TCP gateway would, and stays silent on a
//! serial line.
//!
//! # Scenarios (t = seconds since the scenario was set)
//!
//! - `normal`: the baseline.
//! - `cabinet-overheat`: `temp_c` rises 1 °C/s up to 75 °C, `voc_ppm` 0.05 ppm/s up to 50,
//!   `lel_pct` 0.2 %LEL/s up to 30, `rh_pct` falls 0.2 %/s down to 20.
//! - `ventilation-failure`: the exhaust fan stops (`fan_on` false, `airflow_mps` 0), `voc_ppm`
//!   rises 0.2 ppm/s up to 200 and `lel_pct` 0.5 %LEL/s up to 60. Writing coil 0 = true (the
//!   gateway's action "switch the fan on") restarts the fan and the values return to normal.
//!
//! `config/modbus-sim.example.toml` is a `[modbus]` config that reads this map.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use rand::Rng;
use tokio::net::TcpListener;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::Service;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Registers per table (holding and input) served per unit.
pub const REGISTER_COUNT: u16 = 16;
/// Coils and discrete inputs served per unit.
pub const BIT_COUNT: u16 = 8;

/// Named scenarios shared with the MQTT nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    #[default]
    Normal,
    CabinetOverheat,
    VentilationFailure,
}

/// A fault a unit shows to every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitFault {
    /// Answer every request with this Modbus exception code (e.g. 6 = device busy).
    Exception(u8),
    /// Never answer (the client runs into its timeout).
    Stall,
}

/// The physical values of one cabinet at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CabinetValues {
    pub temp_c: f32,
    pub rh_pct: f32,
    pub lel_pct: f64,
    pub voc_ppm: f64,
    pub airflow_mps: f64,
    pub fan_on: bool,
    pub door_open: bool,
}

#[derive(Debug)]
struct SimState {
    scenario: Scenario,
    scenario_since: Instant,
    faults: HashMap<u8, UnitFault>,
    /// Fan commands written by a client, per unit (none: the scenario decides).
    fan_commands: HashMap<u8, bool>,
}

/// What the simulated cabinets do; shared by the server and whoever steers it (CLI, tests).
#[derive(Debug)]
pub struct Behaviour {
    noise: AtomicBool,
    state: Mutex<SimState>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self::new(true)
    }
}

impl Behaviour {
    pub fn new(noise: bool) -> Self {
        Self {
            noise: AtomicBool::new(noise),
            state: Mutex::new(SimState {
                scenario: Scenario::Normal,
                scenario_since: Instant::now(),
                faults: HashMap::new(),
                fan_commands: HashMap::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SimState> {
        // A panic while holding this lock cannot leave the plain data inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts `scenario` now (its clock restarts) and forgets written fan commands.
    pub fn set_scenario(&self, scenario: Scenario) {
        let mut state = self.state();
        state.scenario = scenario;
        state.scenario_since = Instant::now();
        state.fan_commands.clear();
    }

    pub fn set_fault(&self, unit: u8, fault: Option<UnitFault>) {
        let mut state = self.state();
        match fault {
            Some(fault) => state.faults.insert(unit, fault),
            None => state.faults.remove(&unit),
        };
    }

    pub fn set_noise(&self, noise: bool) {
        self.noise.store(noise, Ordering::Relaxed);
    }

    /// The values cabinet `unit` shows now.
    pub fn values(&self, unit: u8) -> CabinetValues {
        let (scenario, t, fan_command) = {
            let state = self.state();
            (
                state.scenario,
                state.scenario_since.elapsed().as_secs_f64(),
                state.fan_commands.get(&unit).copied(),
            )
        };
        let mut v = CabinetValues {
            temp_c: 21.0 + 0.5 * f32::from(unit),
            rh_pct: 45.25,
            lel_pct: 1.5,
            voc_ppm: 0.42,
            airflow_mps: 0.65,
            fan_on: true,
            door_open: false,
        };
        match scenario {
            Scenario::Normal => {}
            Scenario::CabinetOverheat => {
                // f32 precision is what the register holds anyway.
                v.temp_c = (f64::from(v.temp_c) + t).min(75.0) as f32;
                v.rh_pct = (f64::from(v.rh_pct) - 0.2 * t).max(20.0) as f32;
                v.voc_ppm = (v.voc_ppm + 0.05 * t).min(50.0);
                v.lel_pct = (v.lel_pct + 0.2 * t).min(30.0);
            }
            Scenario::VentilationFailure => {
                if fan_command != Some(true) {
                    v.fan_on = false;
                    v.voc_ppm = (v.voc_ppm + 0.2 * t).min(200.0);
                    v.lel_pct = (v.lel_pct + 0.5 * t).min(60.0);
                }
            }
        }
        if fan_command == Some(false) {
            v.fan_on = false;
        }
        if !v.fan_on {
            v.airflow_mps = 0.0;
        }
        if self.noise.load(Ordering::Relaxed) {
            let mut rng = rand::thread_rng();
            v.temp_c += rng.gen_range(-0.1..=0.1);
            v.rh_pct += rng.gen_range(-0.5..=0.5);
            v.voc_ppm = (v.voc_ppm + rng.gen_range(-0.02..=0.02)).max(0.0);
            v.lel_pct = (v.lel_pct + rng.gen_range(-0.05..=0.05)).max(0.0);
            if v.fan_on {
                v.airflow_mps += rng.gen_range(-0.02..=0.02);
            }
        }
        v
    }

    fn fault(&self, unit: u8) -> Option<UnitFault> {
        self.state().faults.get(&unit).copied()
    }

    fn command_fan(&self, unit: u8, on: bool) {
        self.state().fan_commands.insert(unit, on);
    }
}

/// The 16 registers of a cabinet, laid out as the module doc's table says.
pub fn registers(unit: u8, v: &CabinetValues) -> [u16; REGISTER_COUNT as usize] {
    let mut r = [0u16; REGISTER_COUNT as usize];
    let temp = v.temp_c.to_bits();
    // f32 CDAB: least significant word first.
    r[0] = (temp & 0xFFFF) as u16;
    r[1] = (temp >> 16) as u16;
    let rh = v.rh_pct.to_bits();
    r[2] = (rh >> 16) as u16;
    r[3] = (rh & 0xFFFF) as u16;
    // i32 ABCD in thousandths of %LEL.
    let lel = (v.lel_pct * 1000.0)
        .round()
        .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
    let lel = lel as u32;
    r[4] = (lel >> 16) as u16;
    r[5] = (lel & 0xFFFF) as u16;
    r[6] = scaled_u16(v.voc_ppm, 100.0);
    r[7] = scaled_u16(v.airflow_mps, 100.0);
    r[8] = u16::from(v.fan_on) | u16::from(v.door_open) << 1;
    r[9] = u16::from(unit);
    r
}

fn scaled_u16(value: f64, factor: f64) -> u16 {
    // Clamped into range first, so the cast only drops the fraction.
    (value * factor).round().clamp(0.0, f64::from(u16::MAX)) as u16
}

/// The 8 coils of a cabinet.
pub fn coils(v: &CabinetValues) -> [bool; BIT_COUNT as usize] {
    let mut c = [false; BIT_COUNT as usize];
    c[0] = v.fan_on;
    c
}

/// The 8 discrete inputs of a cabinet.
pub fn discrete_inputs(v: &CabinetValues) -> [bool; BIT_COUNT as usize] {
    let mut d = [false; BIT_COUNT as usize];
    d[0] = v.door_open;
    d
}

/// The tokio-modbus service answering for all cabinets.
struct CabinetService {
    cabinets: u8,
    behaviour: Arc<Behaviour>,
    /// On a serial line an absent unit stays silent; a TCP gateway answers exception 11.
    silent_for_absent_units: bool,
}

fn window(address: u16, count: u16, size: u16) -> Result<std::ops::Range<usize>, ExceptionCode> {
    if count == 0 || count > 2000 {
        return Err(ExceptionCode::IllegalDataValue);
    }
    let end = u32::from(address) + u32::from(count);
    if end > u32::from(size) {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(usize::from(address)..end as usize)
}

impl CabinetService {
    fn answer(&self, unit: u8, request: Request<'_>) -> Result<Option<Response>, ExceptionCode> {
        if unit == 0 {
            // Broadcast: never answered.
            return Ok(None);
        }
        if unit > self.cabinets {
            if self.silent_for_absent_units {
                return Ok(None);
            }
            return Err(ExceptionCode::GatewayTargetDevice);
        }
        match self.behaviour.fault(unit) {
            Some(UnitFault::Stall) => return Ok(None),
            Some(UnitFault::Exception(code)) => return Err(ExceptionCode::new(code)),
            None => {}
        }
        let values = self.behaviour.values(unit);
        let response = match request {
            Request::ReadHoldingRegisters(address, count) => {
                let range = window(address, count, REGISTER_COUNT)?;
                Response::ReadHoldingRegisters(registers(unit, &values)[range].to_vec())
            }
            Request::ReadInputRegisters(address, count) => {
                let range = window(address, count, REGISTER_COUNT)?;
                Response::ReadInputRegisters(registers(unit, &values)[range].to_vec())
            }
            Request::ReadCoils(address, count) => {
                let range = window(address, count, BIT_COUNT)?;
                Response::ReadCoils(coils(&values)[range].to_vec())
            }
            Request::ReadDiscreteInputs(address, count) => {
                let range = window(address, count, BIT_COUNT)?;
                Response::ReadDiscreteInputs(discrete_inputs(&values)[range].to_vec())
            }
            Request::WriteSingleCoil(0, on) => {
                self.behaviour.command_fan(unit, on);
                info!(unit, on, "simulated cabinet fan commanded");
                Response::WriteSingleCoil(0, on)
            }
            Request::WriteMultipleCoils(0, coils) if coils.len() == 1 => {
                self.behaviour.command_fan(unit, coils[0]);
                info!(unit, on = coils[0], "simulated cabinet fan commanded");
                Response::WriteMultipleCoils(0, 1)
            }
            Request::WriteSingleCoil(..)
            | Request::WriteMultipleCoils(..)
            | Request::WriteSingleRegister(..)
            | Request::WriteMultipleRegisters(..)
            | Request::MaskWriteRegister(..) => return Err(ExceptionCode::IllegalDataAddress),
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        Ok(Some(response))
    }
}

impl Service for CabinetService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Self::Response, Self::Exception>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        ready(self.answer(request.slave, request.request))
    }
}

/// Serves `cabinets` cabinets (unit ids `1..=cabinets`) over Modbus TCP on `listener` until
/// `shutdown`; open connections are closed when it returns.
pub async fn serve(
    listener: TcpListener,
    cabinets: u8,
    behaviour: Arc<Behaviour>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = Arc::new(CabinetService {
        cabinets,
        behaviour,
        silent_for_absent_units: false,
    });
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream, peer: SocketAddr| {
        let service = service.clone();
        debug!(%peer, "Modbus client connected to simulator");
        async move { Ok(Some((service, stream))) }
    };
    let on_error = |error| debug!(%error, "Modbus simulator connection ended");
    server
        .serve_until(&on_connected, on_error, shutdown.cancelled_owned())
        .await
        .context("Modbus TCP simulator failed")?;
    Ok(())
}

/// Like [`serve`], with RTU framing (CRC, no MBAP header) over TCP, as serial-to-Ethernet
/// converters in transparent mode do.
pub async fn serve_rtu_over_tcp(
    listener: TcpListener,
    cabinets: u8,
    behaviour: Arc<Behaviour>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = Arc::new(CabinetService {
        cabinets,
        behaviour,
        silent_for_absent_units: false,
    });
    let server = tokio_modbus::server::rtu_over_tcp::Server::new(listener);
    let on_connected = |stream, peer: SocketAddr| {
        let service = service.clone();
        debug!(%peer, "Modbus RTU-over-TCP client connected to simulator");
        async move { Ok(Some((service, stream))) }
    };
    let on_error = |error| debug!(%error, "Modbus simulator connection ended");
    server
        .serve_until(&on_connected, on_error, shutdown.cancelled_owned())
        .await
        .context("Modbus RTU-over-TCP simulator failed")?;
    Ok(())
}

/// Serves the cabinets with RTU framing on a serial port (or one end of a pty pair).
pub async fn serve_rtu(
    serial: &str,
    baud: u32,
    cabinets: u8,
    behaviour: Arc<Behaviour>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = Arc::new(CabinetService {
        cabinets,
        behaviour,
        silent_for_absent_units: true,
    });
    let server = tokio_modbus::server::rtu::Server::new_from_path(serial, baud)
        .with_context(|| format!("cannot open serial port `{serial}`"))?;
    server
        .serve_until(service, shutdown.cancelled_owned())
        .await
        .context("Modbus RTU simulator failed")?;
    Ok(())
}

/// Parses `UNIT:CODE`, e.g. `2:6` (unit 2 answers "device busy").
fn parse_exception_unit(text: &str) -> Result<(u8, u8), String> {
    let (unit, code) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not UNIT:CODE"))?;
    let unit = unit.parse().map_err(|_| format!("bad unit in `{text}`"))?;
    let code = code
        .parse()
        .map_err(|_| format!("bad exception code in `{text}`"))?;
    Ok((unit, code))
}

/// `campusguard-sim modbus`: serve simulated chemical cabinets.
#[derive(Debug, Clone, clap::Args)]
pub struct ModbusArgs {
    /// TCP address to listen on.
    #[arg(long, default_value = "127.0.0.1:5020")]
    pub listen: SocketAddr,
    /// Number of cabinets, served as unit ids 1..=N.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=247))]
    pub units: u8,
    #[arg(long, value_enum, default_value_t = Scenario::Normal)]
    pub scenario: Scenario,
    /// Serve the documented baseline values exactly (no noise).
    #[arg(long)]
    pub no_noise: bool,
    /// Use RTU framing over TCP instead of Modbus TCP.
    #[arg(long)]
    pub rtu_over_tcp: bool,
    /// Serve RTU on this serial port (or pty) instead of TCP; `--listen` is then ignored.
    #[arg(long)]
    pub serial: Option<PathBuf>,
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    /// Unit that never answers (repeatable).
    #[arg(long, value_name = "UNIT")]
    pub stall_unit: Vec<u8>,
    /// Unit that answers every request with an exception, `UNIT:CODE` (repeatable).
    #[arg(long, value_name = "UNIT:CODE", value_parser = parse_exception_unit)]
    pub exception_unit: Vec<(u8, u8)>,
}

/// Runs the `modbus` subcommand until Ctrl-C.
pub async fn run_cli(args: ModbusArgs) -> anyhow::Result<()> {
    let behaviour = Arc::new(Behaviour::new(!args.no_noise));
    behaviour.set_scenario(args.scenario);
    for unit in &args.stall_unit {
        behaviour.set_fault(*unit, Some(UnitFault::Stall));
    }
    for (unit, code) in &args.exception_unit {
        behaviour.set_fault(*unit, Some(UnitFault::Exception(*code)));
    }
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    if let Some(serial) = &args.serial {
        let serial = serial.to_string_lossy();
        info!(%serial, units = args.units, scenario = ?args.scenario, "Modbus RTU simulator serving");
        return serve_rtu(&serial, args.baud, args.units, behaviour, shutdown).await;
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    info!(listen = %local, units = args.units, scenario = ?args.scenario, "Modbus simulator serving");
    // A plain line on stdout too, so scripts can wait for it.
    println!("modbus simulator listening on {local}");
    if args.rtu_over_tcp {
        serve_rtu_over_tcp(listener, args.units, behaviour, shutdown).await
    } else {
        serve(listener, args.units, behaviour, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_registers_hold_the_documented_values() {
        let behaviour = Behaviour::new(false);
        let r = registers(1, &behaviour.values(1));
        // 21.5f32 = 0x41AC0000, CDAB -> [0x0000, 0x41AC].
        assert_eq!(&r[0..2], &[0x0000, 0x41AC]);
        // 45.25f32 = 0x42350000, ABCD.
        assert_eq!(&r[2..4], &[0x4235, 0x0000]);
        assert_eq!(&r[4..6], &[0, 1500]);
        assert_eq!(r[6], 42);
        assert_eq!(r[7], 65);
        assert_eq!(r[8], 0b01);
        assert_eq!(r[9], 1);
    }

    #[test]
    fn ventilation_failure_stops_the_fan_until_it_is_commanded_on() {
        let behaviour = Behaviour::new(false);
        behaviour.set_scenario(Scenario::VentilationFailure);
        let v = behaviour.values(2);
        assert!(!v.fan_on);
        assert_eq!(v.airflow_mps, 0.0);
        behaviour.command_fan(2, true);
        let v = behaviour.values(2);
        assert!(v.fan_on);
        assert_eq!(v.airflow_mps, 0.65);
    }

    #[test]
    fn exceptions_and_stalls_are_per_unit() {
        let service = CabinetService {
            cabinets: 3,
            behaviour: Arc::new(Behaviour::new(false)),
            silent_for_absent_units: false,
        };
        service
            .behaviour
            .set_fault(2, Some(UnitFault::Exception(6)));
        service.behaviour.set_fault(3, Some(UnitFault::Stall));
        let read = || Request::ReadHoldingRegisters(0, 2);
        assert!(matches!(service.answer(1, read()), Ok(Some(_))));
        assert_eq!(
            service.answer(2, read()),
            Err(ExceptionCode::ServerDeviceBusy)
        );
        assert_eq!(service.answer(3, read()), Ok(None));
        assert_eq!(
            service.answer(4, read()),
            Err(ExceptionCode::GatewayTargetDevice)
        );
        assert_eq!(
            service.answer(1, Request::ReadHoldingRegisters(10, 7)),
            Err(ExceptionCode::IllegalDataAddress)
        );
    }
}
