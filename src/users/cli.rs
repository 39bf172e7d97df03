//! `campusguard users add|passwd|disable|enable|list --config FILE`: manages console users in
//! the local store named by the config's `[storage]` (`main.rs` loads the config and passes
//! that slice). `passwd` and `disable` end the user's sessions, also in a running gateway.
//! Passwords come from an environment variable
//! (`--password-env`) or the first line of standard input, never from the command line
//! (which other users of the machine can read).

use std::io::BufRead;

use super::{parse_role, UserStore};
use crate::store::{LocalStore, StorageConfig};

/// What `campusguard users` was asked to do.
pub enum UsersCommand {
    Add {
        name: String,
        role: String,
        schools: Vec<String>,
        password_env: Option<String>,
    },
    Passwd {
        name: String,
        password_env: Option<String>,
    },
    /// No login, and every session ends (a running gateway ends them within a second).
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    List,
}

fn read_password(env: Option<&str>) -> anyhow::Result<String> {
    if let Some(var) = env {
        return std::env::var(var)
            .map_err(|_| anyhow::anyhow!("environment variable {var} is not set"));
    }
    eprintln!("password (one line on standard input):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Runs one `users` subcommand against the local store of `storage`.
pub async fn run(storage: &StorageConfig, command: UsersCommand) -> anyhow::Result<()> {
    let store = LocalStore::open(storage).await?;
    let users = UserStore::new(store.pool().clone());
    let result = match command {
        UsersCommand::Add {
            name,
            role,
            schools,
            password_env,
        } => {
            let role = parse_role(&role)?;
            let password = read_password(password_env.as_deref())?;
            let schools = (!schools.is_empty()).then_some(schools);
            users.add(&name, role, schools, &password).await?;
            println!("user {name} added ({})", role.as_str());
            Ok(())
        }
        UsersCommand::Passwd { name, password_env } => {
            let password = read_password(password_env.as_deref())?;
            users.set_password(&name, &password).await?;
            println!("password of {name} changed; their console sessions have ended");
            Ok(())
        }
        UsersCommand::Disable { name } => {
            users.set_disabled(&name, true).await?;
            println!("user {name} disabled; their console sessions have ended");
            Ok(())
        }
        UsersCommand::Enable { name } => {
            users.set_disabled(&name, false).await?;
            println!("user {name} enabled");
            Ok(())
        }
        UsersCommand::List => {
            for u in users.list().await? {
                println!(
                    "{}\t{}\t{}{}",
                    u.name,
                    u.role.as_str(),
                    u.schools.map(|s| s.join(",")).unwrap_or_else(|| "*".into()),
                    if u.disabled { "\tdisabled" } else { "" }
                );
            }
            Ok(())
        }
    };
    store.close().await;
    result
}
