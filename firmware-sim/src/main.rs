//! The `campusguard-sim` binary: parses the command line and hands over to
//! [`campusguard_sim::cli`].

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    campusguard_sim::cli::main(campusguard_sim::cli::Cli::parse()).await
}
