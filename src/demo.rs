//! `campusguard demo`: embedded broker + gateway + simulator in one process (and a webhook
//! receiver that prints the notifications the gateway sends it), on the embedded
//! defaults of `config/demo.toml`. The simulated campus announces its devices over retained
//! `meta`, so the gateway learns them like real ones; the simulator's demo schedule
//! ([`ScheduledScenario::demo_schedule`]) makes alarms appear within the first minute.

use std::sync::Arc;
use std::time::Duration;

use campusguard_sim::{ScheduledScenario, SimConfig};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;

mod seed;

/// The demo configuration, compiled in so `campusguard demo` needs no files (it lives with the
/// other shipped configs in `config`, which knows their public placeholder secrets).
pub use crate::config::DEMO_CONFIG;

pub fn demo_config() -> Result<Config, crate::config::ConfigError> {
    Config::from_toml(
        DEMO_CONFIG,
        std::path::Path::new("config/demo.toml"),
        std::env::vars(),
    )
}

/// Runs the demo until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let schedule = ScheduledScenario::demo_schedule();
    let sim = SimConfig {
        host: config.broker.listen.ip().to_string(),
        port: config.broker.listen.port(),
        topic_prefix: config.mqtt.topic_prefix.clone(),
        client_id: "campusguard-demo-sim".into(),
        scenarios: schedule.clone(),
        ..SimConfig::default()
    };
    let token = config
        .http
        .tokens
        .iter()
        .find(|t| t.role.handles_alarms())
        .and_then(|t| t.secret());
    // The simulated Modbus cabinets the demo config polls. A taken port only costs the demo
    // its Modbus cabinet (which then shows as offline), not the rest.
    let modbus_addrs: std::collections::BTreeSet<String> = config
        .modbus
        .devices
        .iter()
        .filter_map(|d| d.address.clone())
        .collect();
    for addr in modbus_addrs {
        match tokio::net::TcpListener::bind(&addr).await {
            Ok(listener) => {
                let behaviour = Arc::new(campusguard_sim::modbus::Behaviour::new(true));
                let stop = shutdown.child_token();
                tokio::spawn(async move {
                    if let Err(e) =
                        campusguard_sim::modbus::serve(listener, 2, behaviour, stop).await
                    {
                        warn!(error = %e, "simulated Modbus cabinets stopped");
                    }
                });
            }
            Err(e) => warn!(%addr, error = %e, "cannot serve the simulated Modbus cabinets"),
        }
    }
    // The demo's notification receiver: prints what the gateway sends to its webhook channels
    // (a taken port only costs the demo its printout).
    for channel in &config.notify.channels {
        if channel.kind != crate::notify::ChannelKind::Webhook {
            continue;
        }
        let Some(addr) = channel
            .resolved_url()
            .and_then(|u| reqwest::Url::parse(&u).ok())
            .and_then(|u| u.socket_addrs(|| None).ok())
            .and_then(|a| a.first().copied())
            .filter(|a| a.ip().is_loopback())
        else {
            continue;
        };
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let stop = shutdown.child_token();
                tokio::spawn(print_notifications(listener, stop));
            }
            Err(e) => warn!(%addr, error = %e, "cannot start the demo's notification receiver"),
        }
    }
    let logins: Vec<(String, String, &'static str)> = config
        .users
        .seed
        .iter()
        .filter_map(|u| Some((u.name.clone(), u.secret()?, u.role.as_str())))
        .collect();
    // A previous month of tickets, so the bureau's page is not empty at the start (only into
    // an empty ticket database; the demo runs without it if that fails).
    match seed::previous_month(
        &config.tickets,
        &config.storage.data_dir,
        crate::model::now_ms(),
    )
    .await
    {
        Ok(0) => {}
        Ok(n) => println!("  seeded last month: {n} hazard tickets in three schools"),
        Err(e) => warn!(error = %e, "could not seed the demo's previous month"),
    }
    match seed::past_drills(
        &config.storage,
        config.tickets.offset_ms(),
        crate::model::now_ms(),
    )
    .await
    {
        Ok(0) => {}
        Ok(n) => println!("  seeded half a year of drills: {n}"),
        Err(e) => warn!(error = %e, "could not seed the demo's past drills"),
    }
    let gateway = crate::start(config, shutdown.clone()).await?;
    let sim_stop = shutdown.child_token();
    let sim_task = tokio::spawn(async move {
        if let Err(e) = campusguard_sim::run(sim, sim_stop).await {
            warn!(error = %e, "simulator stopped");
        }
    });
    let http = gateway.http_addr;
    println!("campusguard demo is running (Ctrl-C to stop)");
    println!("  console:  http://{http}/");
    for (name, password, role) in &logins {
        println!("            log in as {name} / {password} ({role})");
    }
    println!("  alarms:   curl http://{http}/api/v1/alarms");
    println!("  live:     curl -N http://{http}/api/v1/alarms/stream");
    println!("  sensors:  curl http://{http}/api/v1/sensors");
    println!("  metrics:  curl http://{http}/metrics");
    if let Some(token) = token {
        println!(
            "  ack:      curl -X POST -H 'Authorization: Bearer {token}' http://{http}/api/v1/alarms/<id>/ack"
        );
    }
    let scenarios: Vec<String> = schedule
        .iter()
        .map(|s| format!("{} at {} s", s.scenario, s.after.as_secs()))
        .collect();
    println!("  scenarios: {}", scenarios.join(", "));
    println!("  notifications: printed below as the demo's webhook receives them");
    shutdown.cancelled().await;
    let _ = tokio::time::timeout(Duration::from_secs(3), sim_task).await;
    let _ = tokio::time::timeout(crate::SHUTDOWN_DEADLINE, gateway.wait()).await;
    Ok(())
}

/// Serves the demo's webhook: prints each notification's text, indented, until `stop`.
async fn print_notifications(listener: tokio::net::TcpListener, stop: CancellationToken) {
    use axum::routing::post;
    async fn receive(body: axum::Json<serde_json::Value>) -> &'static str {
        let text = body["notification"]["text"].as_str().unwrap_or_default();
        let mut lines = text.lines();
        println!("\n通知 ← {}", lines.next().unwrap_or_default());
        for line in lines {
            println!("         {line}");
        }
        "ok"
    }
    let app = axum::Router::new().route("/{*path}", post(receive));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = served {
        warn!(error = %e, "the demo's notification receiver stopped");
    }
}
