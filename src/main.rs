//! The `campusguard` command: `run`, `demo`, `check`, `init`, `users`, `tickets export`,
//! `notify test`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use campusguard::config::{Config, ConfigError};

#[derive(Parser)]
#[command(
    name = "campusguard",
    version,
    about = "Safety-monitoring gateway for school campuses"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway daemon.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Embedded broker + gateway + simulator in one process (console on http://127.0.0.1:8080).
    Demo {
        /// Use this config instead of the built-in demo config.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print a summary (exit 2 on error).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// First run: write a complete, commented config with random tokens and create an `admin`
    /// console user; prints the tokens and the admin password once.
    Init {
        /// Where to write the config (never over an existing file).
        #[arg(long, short)]
        config: PathBuf,
        /// The state directory (default: `data` beside the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Copy the local SQLite stores (alarms, journal, history, users, SQLite tickets) into a
    /// directory, consistently, while the gateway runs.
    Backup {
        #[arg(long, short)]
        config: PathBuf,
        /// The directory to write the copies to (created; must not hold copies already).
        #[arg(long)]
        to: PathBuf,
    },
    /// Manage console users in the local store of a configuration.
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Hazard tickets.
    Tickets {
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// Notifications.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Send a test message on one channel of [[notify.channels]] and print the answer.
    Test {
        /// The channel's `name`.
        #[arg(long)]
        channel: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TicketsCommand {
    /// Write the monthly hazard ledger (tickets open at any time in the month).
    Export {
        /// `YYYY-MM`.
        #[arg(long)]
        month: String,
        /// csv (UTF-8 with BOM), xlsx or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Column headers and labels: zh (default) or en.
        #[arg(long, default_value = "zh")]
        lang: String,
        #[arg(long, short)]
        config: PathBuf,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Add a user; the password is read from --password-env or one line of standard input.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        name: String,
        /// operator, lab_manager, school_safety, bureau or admin.
        #[arg(long)]
        role: String,
        /// A school the user may see (repeat for several); none = every school.
        #[arg(long = "school")]
        schools: Vec<String>,
        /// Read the password from this environment variable.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Change a user's password (read like `add`).
    Passwd {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Disable a user: no login, and every console session of theirs ends.
    Disable {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// List users: name, role, schools (`*` = all), and `disabled` for a disabled one.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    campusguard::logging::init();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(cfg) => {
                println!("{}: OK", config.display());
                print!("{}", cfg.summary());
                for note in cfg.notes() {
                    println!("note: {note}");
                }
                for warning in cfg.secret_warnings(&config) {
                    println!("warning: {warning}");
                }
                let refused = cfg.run_problems();
                if !refused.is_empty() {
                    println!(
                        "warning: `campusguard run` refuses this configuration until these are fixed:\n{}",
                        list(&refused)
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => config_failed(&e),
        },
        Command::Init { config, data_dir } => init(&config, data_dir),
        Command::Backup { config, to } => {
            let cfg = match Config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => return config_failed(&e),
            };
            let tickets_in_sqlite = cfg.tickets.database_url.is_none();
            match campusguard::store::backup::backup(&cfg.storage.data_dir, tickets_in_sqlite, &to)
            {
                Ok(copied) => {
                    for c in copied {
                        println!(
                            "{}: {} bytes, integrity_check ok",
                            to.join(&c.name).display(),
                            c.bytes
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("campusguard backup: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => return config_failed(&e),
            };
            let refused = cfg.run_problems();
            if !refused.is_empty() {
                eprintln!(
                    "{}: `campusguard run` refuses placeholder or short secrets:\n{}\n(`campusguard demo` runs with the demo's own; a real gateway needs its own)",
                    config.display(),
                    list(&refused)
                );
                return ExitCode::from(2);
            }
            serve(
                |shutdown| async move { campusguard::run(cfg, shutdown).await.map_err(Into::into) },
            )
        }
        Command::Tickets {
            command:
                TicketsCommand::Export {
                    month,
                    format,
                    lang,
                    config,
                    output,
                },
        } => {
            let cfg = match Config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => return config_failed(&e),
            };
            export_ledger(&cfg, &month, &format, &lang, output.as_deref())
        }
        Command::Users { action } => {
            use campusguard::users::cli::UsersCommand;
            let (path, command) = match action {
                UsersAction::Add {
                    config,
                    name,
                    role,
                    schools,
                    password_env,
                } => (
                    config,
                    UsersCommand::Add {
                        name,
                        role,
                        schools,
                        password_env,
                    },
                ),
                UsersAction::Passwd {
                    config,
                    name,
                    password_env,
                } => (config, UsersCommand::Passwd { name, password_env }),
                UsersAction::Disable { config, name } => (config, UsersCommand::Disable { name }),
                UsersAction::Enable { config, name } => (config, UsersCommand::Enable { name }),
                UsersAction::List { config } => (config, UsersCommand::List),
            };
            let cfg = match Config::load(&path) {
                Ok(cfg) => cfg,
                Err(e) => return config_failed(&e),
            };
            let Some(runtime) = runtime(Threads::One) else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(campusguard::users::cli::run(&cfg.storage, command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("campusguard users: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Notify {
            command: NotifyCommand::Test { channel, config },
        } => {
            let cfg = match Config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => return config_failed(&e),
            };
            let Some(runtime) = runtime(Threads::One) else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(campusguard::notify::cli::test(&cfg.notify, &channel)) {
                Ok(answer) => {
                    println!("{channel}: delivered ({answer})");
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    eprintln!("{channel}: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { config } => {
            let cfg = match config {
                Some(path) => Config::load(&path),
                None => campusguard::demo::demo_config(),
            };
            let cfg = match cfg {
                Ok(cfg) => cfg,
                Err(e) => return config_failed(&e),
            };
            serve(|shutdown| campusguard::demo::run(cfg, shutdown))
        }
    }
}

/// `campusguard tickets export`: exit 2 on bad arguments, 1 when the store fails.
fn export_ledger(
    cfg: &Config,
    month: &str,
    format: &str,
    lang: &str,
    output: Option<&std::path::Path>,
) -> ExitCode {
    use campusguard::tickets::{export::Format, model::Lang, Tickets};
    let (Some(format), Some(lang)) = (Format::parse(format), Lang::parse(lang)) else {
        eprintln!("--format must be csv, xlsx or json; --lang zh or en");
        return ExitCode::from(2);
    };
    let Some(runtime) = runtime(Threads::One) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let tickets = Tickets::open(&cfg.tickets, &cfg.storage.data_dir).await?;
        let bytes = tickets.export(month, format, lang, None).await;
        tickets.store.close().await;
        bytes
    });
    let bytes = match result {
        Ok(b) => b,
        Err(e @ campusguard::tickets::TicketError::Invalid(_)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("campusguard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let written = match output {
        Some(path) => std::fs::write(path, &bytes),
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write the ledger: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `campusguard init`: exit 2 when the config exists already, 1 on any other failure.
fn init(config: &std::path::Path, data_dir: Option<PathBuf>) -> ExitCode {
    if config.exists() {
        eprintln!(
            "campusguard init: {} exists; init writes a new config only",
            config.display()
        );
        return ExitCode::from(2);
    }
    let Some(runtime) = runtime(Threads::One) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(campusguard::init::run(config, data_dir)) {
        Ok(generated) => {
            println!("wrote {} (mode 0640)", config.display());
            println!("bearer tokens (shown once; they are in the config):");
            for (name, role, token) in &generated.tokens {
                println!("  {name} ({role}): {token}");
            }
            println!(
                "console user `{}` (admin), password (shown once; change it with `campusguard users passwd --config {} --name {}`):\n  {}",
                campusguard::init::ADMIN_USER,
                config.display(),
                campusguard::init::ADMIN_USER,
                generated.admin_password
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("campusguard init: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Problems as an indented list, one a line.
fn list(problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn config_failed(e: &ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(2)
}

/// Runs `body` on a multi-threaded runtime until SIGINT/SIGTERM.
fn serve<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let Some(runtime) = runtime(Threads::Many) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            campusguard_sim::shutdown_signal().await;
            tracing::info!("shutdown signal received");
            signal.cancel();
        });
        match body(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "campusguard failed");
                eprintln!("campusguard: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// How many worker threads a command's runtime gets.
enum Threads {
    /// The one-shot commands (`users`, `tickets export`).
    One,
    /// The daemon and the demo.
    Many,
}

/// The async runtime of a command; `None` (after saying why) when it cannot start.
fn runtime(threads: Threads) -> Option<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Many => tokio::runtime::Builder::new_multi_thread(),
    };
    match builder.enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            None
        }
    }
}
