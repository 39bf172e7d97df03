//! The `campusguard-sim` command line: `run` (the simulated campus over MQTT), `load` (the load
//! generator), `bench` (the end-to-end benchmark) and `list` (devices and scenario names).
//! `main.rs` only parses and calls [`main`]; new subcommands (a Modbus server, for one) add a
//! variant to [`Command`] and an arm to [`main`].

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rumqttc::QoS;
use tokio_util::sync::CancellationToken;

use crate::campus::{Campus, Profile};
use crate::load::{load, LoadConfig};
use crate::publish::{run, SimConfig};
use crate::scenario::{Scenario, ScheduledScenario};
use crate::sim::ConfigError;

/// Simulated school-campus safety devices speaking device protocol v1 over MQTT.
#[derive(Debug, Parser)]
#[command(name = "campusguard-sim", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the demo campus: meta, status and telemetry of every device, plus scenarios.
    Run(RunArgs),
    /// Publish N devices × M points at a target rate and report the rate achieved.
    Load(LoadArgs),
    /// Print the campus devices and the scenario names.
    List,
    /// Serve simulated Modbus chemical cabinets (TCP, RTU over TCP, or RTU on a serial port).
    Modbus(crate::modbus::ModbusArgs),
    /// The end-to-end benchmark (issue 7): broker limit, gateway ingest, alarm latency, soak,
    /// Node-RED baseline; private Mosquitto, VictoriaMetrics and the release gateway.
    Bench(crate::bench::BenchArgs),
}

/// Broker connection options shared by `run` and `load`.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long, env = "CAMPUSGUARD_SIM_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// MQTT client id (default: derived from the process id).
    #[arg(long)]
    pub client_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// First topic level(s) of every topic.
    #[arg(long, default_value = "campus")]
    pub prefix: String,
    /// Telemetry period of each device, e.g. `1s`, `200ms`.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// A scenario to run (repeatable): fire, cabinet-overheat, ventilation-failure,
    /// device-offline, garbage.
    #[arg(long = "scenario")]
    pub scenarios: Vec<Scenario>,
    /// When the scenario of the same position starts after connecting (repeatable; default 0s).
    #[arg(long = "scenario-after", value_parser = humantime::parse_duration)]
    pub scenario_after: Vec<Duration>,
    /// Target device (`school/device` or a device id) of the scenario of the same position
    /// (repeatable; `-` picks the default target).
    #[arg(long = "scenario-target")]
    pub scenario_target: Vec<String>,
    /// Fraction of devices publishing on single-point topics (0.0–1.0).
    #[arg(long, default_value_t = 0.2)]
    pub single_point_fraction: f64,
    /// QoS of telemetry: 0 or 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Size in bytes of the huge payload of the garbage scenario.
    #[arg(long, default_value_t = 1 << 20)]
    pub garbage_huge_bytes: usize,
    /// Stop after this long (default: run until Ctrl-C / SIGTERM).
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub run_for: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Topic prefix (default: a unique `load-<unix ms>`).
    #[arg(long)]
    pub prefix: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// Points per message (ignored with --profile).
    #[arg(long, default_value_t = 10)]
    pub points: usize,
    /// Send a device profile's points and retained meta instead of generic points.
    #[arg(long)]
    pub profile: Option<Profile>,
    /// Target total readings per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to publish (default 10s when no --count; at most 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// How many messages to publish in total.
    #[arg(long)]
    pub count: Option<u64>,
    /// QoS: 0 or 1.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Number of MQTT connections.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
}

/// Pairs `--scenario` with `--scenario-after` / `--scenario-target` by position.
pub fn schedule(args: &RunArgs) -> Result<Vec<ScheduledScenario>, String> {
    if args.scenario_after.len() > args.scenarios.len() {
        return Err("more --scenario-after than --scenario".to_owned());
    }
    if args.scenario_target.len() > args.scenarios.len() {
        return Err("more --scenario-target than --scenario".to_owned());
    }
    Ok(args
        .scenarios
        .iter()
        .enumerate()
        .map(|(i, scenario)| ScheduledScenario {
            after: args.scenario_after.get(i).copied().unwrap_or_default(),
            scenario: *scenario,
            target: args
                .scenario_target
                .get(i)
                .filter(|t| t.as_str() != "-")
                .cloned(),
        })
        .collect())
}

fn qos(level: u8) -> QoS {
    if level == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second init (e.g. in tests) is harmless; ignore it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Ctrl-C or SIGTERM cancel the token.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        crate::signal::shutdown_signal().await;
        token.cancel();
    });
}

/// Runs a parsed command line; the exit code is 0 on success, 1 on a runtime error, 2 on a
/// usage error.
pub async fn main(cli: Cli) -> ExitCode {
    init_tracing();
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    match cli.command {
        Command::Bench(args) => match crate::bench::run(args, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Modbus(args) => match crate::modbus::run_cli(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::List => {
            print!("{}", list(&Campus::demo()));
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            let scenarios = match schedule(&args) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let defaults = SimConfig::default();
            let config = SimConfig {
                host: args.broker.host,
                port: args.broker.port,
                client_id: args.broker.client_id.unwrap_or(defaults.client_id),
                topic_prefix: args.prefix,
                interval: args.interval,
                seed: args.seed,
                username: args.broker.username,
                password: args.broker.password,
                scenarios,
                campus: Campus::demo(),
                use_single_point_topics_for: args.single_point_fraction,
                telemetry_qos: qos(args.qos),
                garbage_huge_bytes: args.garbage_huge_bytes,
                max_backoff: defaults.max_backoff,
            };
            if let Some(limit) = args.run_for {
                let token = shutdown.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(limit).await;
                    token.cancel();
                });
            }
            match run(config, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failure(&e),
            }
        }
        Command::Load(args) => {
            let defaults = LoadConfig::default();
            let config = LoadConfig {
                host: args.broker.host,
                port: args.broker.port,
                client_id: args.broker.client_id.unwrap_or(defaults.client_id),
                topic_prefix: args.prefix.unwrap_or(defaults.topic_prefix),
                devices: args.devices,
                points: args.points,
                profile: args.profile,
                rate: args.rate,
                duration: args.duration,
                count: args.count,
                qos: qos(args.qos),
                connections: args.connections,
                username: args.broker.username,
                password: args.broker.password,
                ..defaults
            };
            match load(config, shutdown).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => failure(&e),
            }
        }
    }
}

/// Prints the error; a configuration error is a usage error (exit 2), anything else exit 1.
fn failure(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    if e.downcast_ref::<ConfigError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// The text of `campusguard-sim list`.
pub fn list(campus: &Campus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Devices ({}):", campus.devices.len());
    for device in &campus.devices {
        let _ = writeln!(
            out,
            "  {:<20} {:<17} {:<2} {:<13} {}",
            device.key(),
            device.profile.as_str(),
            device.building,
            device.room,
            device.name
        );
    }
    let _ = writeln!(out, "\nScenarios:");
    for scenario in Scenario::ALL {
        let target = scenario
            .default_target(campus)
            .map(|i| campus.devices[i].key())
            .unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "  {:<20} {:>4}s  default target {:<18} {}",
            scenario.as_str(),
            scenario.default_duration().as_secs(),
            target,
            scenario.description()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_pair_with_their_after_and_target_by_position() {
        let cli = Cli::try_parse_from([
            "campusguard-sim",
            "run",
            "--scenario",
            "fire",
            "--scenario-after",
            "20s",
            "--scenario-target",
            "-",
            "--scenario",
            "garbage",
            "--scenario-after",
            "1m",
            "--scenario-target",
            "dfzx/cab-1",
            "--scenario",
            "device-offline",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let schedule = schedule(&args).unwrap();
        assert_eq!(schedule.len(), 3);
        assert_eq!(schedule[0].after, Duration::from_secs(20));
        assert_eq!(schedule[0].target, None);
        assert_eq!(schedule[1].scenario, Scenario::Garbage);
        assert_eq!(schedule[1].after, Duration::from_secs(60));
        assert_eq!(schedule[1].target.as_deref(), Some("dfzx/cab-1"));
        assert_eq!(schedule[2].after, Duration::ZERO);
    }

    #[test]
    fn an_unknown_scenario_name_is_a_usage_error() {
        let parsed = Cli::try_parse_from(["campusguard-sim", "run", "--scenario", "flood"]);
        assert!(parsed.is_err());
    }

    #[test]
    fn list_names_every_device_and_scenario() {
        let campus = Campus::demo();
        let text = list(&campus);
        for device in &campus.devices {
            assert!(text.contains(&device.key()));
        }
        for scenario in Scenario::ALL {
            assert!(text.contains(scenario.as_str()));
        }
    }
}
