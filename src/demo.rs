//! `campusguard demo`: embedded broker + gateway + simulator in one process, on the embedded
//! defaults of `config/demo.toml`.

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The demo configuration, compiled in so `campusguard demo` needs no files.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

pub fn demo_config() -> Result<Config, crate::config::ConfigError> {
    Config::from_toml(
        DEMO_CONFIG,
        std::path::Path::new("config/demo.toml"),
        std::env::vars(),
    )
}

/// Runs the demo until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let gateway = crate::start(config, shutdown.clone()).await?;
    println!(
        "campusguard demo running\n  console/API: http://{}/api/v1/alarms\n  stream:      http://{}/api/v1/alarms/stream",
        gateway.http_addr, gateway.http_addr
    );
    shutdown.cancelled().await;
    let _ = tokio::time::timeout(crate::SHUTDOWN_DEADLINE, gateway.wait()).await;
    Ok(())
}
