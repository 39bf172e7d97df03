//! placeholder
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "campusguard-sim", about = "Device simulator for campusguard")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve simulated Modbus chemical cabinets (TCP, RTU over TCP, or RTU on a serial port).
    Modbus(campusguard_sim::modbus::ModbusArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Modbus(args) => campusguard_sim::modbus::run_cli(args).await,
    }
}
