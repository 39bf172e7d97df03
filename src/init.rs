//! `campusguard init --config PATH`: the first-run set-up. Writes a complete, commented
//! configuration (the shipped `config/gateway.example.toml`, every key explained) with
//! random bearer tokens and an absolute data directory, creates an `admin` console user with
//! a random password in the local store, and prints the tokens and the password once — they
//! are not shown again (the tokens stay in the config, readable by root and the service's
//! group only; the password is kept only as an argon2 hash).
//!
//! The example's sample devices are commented out: a fresh gateway must not raise
//! "offline" faults for cabinets that do not exist.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::access::Role;
use crate::config::Config;
use crate::store::LocalStore;
use crate::users::UserStore;

/// The shipped example, the body of every generated config.
const EXAMPLE: &str = include_str!("../config/gateway.example.toml");

/// The console user `init` creates.
pub const ADMIN_USER: &str = "admin";

/// What `init` generated; shown once.
pub struct Generated {
    pub toml: String,
    /// (name, role, token) of every `[[http.tokens]]`.
    pub tokens: Vec<(String, String, String)>,
    pub admin_password: String,
}

/// `bytes` random bytes from the OS, as lowercase hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A password people can type: 20 letters and digits without look-alikes (≈ 110 bits).
fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    // 256 % 55 leaves a bias of under 1 %; fine for a first password that is to be changed.
    buf.iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The configuration text for a gateway keeping its data in `data_dir` (absolute).
pub fn generate(data_dir: &Path) -> Result<Generated, String> {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# campusguard gateway configuration, written by `campusguard init` ({}).\n\
         # Every key is listed with its default and what it does. The bearer tokens below were\n\
         # generated at random and shown once; keep this file readable by root and the\n\
         # campusguard group only (`campusguard check` warns otherwise), or move them to\n\
         # token_file = \"...\" (a systemd credential with LoadCredential=).\n#",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    );
    let mut tokens = Vec::new();
    let mut token_name = String::new();
    let mut in_devices = false;
    let mut saw_data_dir = false;
    for (i, line) in EXAMPLE.lines().enumerate() {
        // The example's own first paragraph is replaced by the header above.
        if i == 0 {
            continue;
        }
        if line.starts_with("# --- Devices registered in config") {
            in_devices = true;
        } else if line.starts_with("# --- ") {
            in_devices = false;
        }
        if in_devices && !line.starts_with('#') {
            // Sample devices: kept as a commented template.
            if line.is_empty() {
                text.push('\n');
            } else {
                let _ = writeln!(text, "# {line}");
            }
            continue;
        }
        if line.starts_with("[[http.tokens]]") {
            token_name.clear();
        }
        if let Some(name) = line.strip_prefix("name = \"") {
            token_name = name.trim_end_matches('"').to_owned();
        }
        if line.starts_with("token = \"") {
            let token = random_hex(24);
            let _ = writeln!(text, "token = \"{token}\"");
            tokens.push((token_name.clone(), String::new(), token));
            continue;
        }
        if let Some(role) = line.strip_prefix("role = \"") {
            if let Some(last) = tokens.last_mut().filter(|t| t.1.is_empty()) {
                last.1 = role.trim_end_matches('"').to_owned();
            }
        }
        if line.starts_with("data_dir = ") {
            let dir = data_dir
                .to_string_lossy()
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            let _ = writeln!(text, "data_dir = \"{dir}\"");
            saw_data_dir = true;
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    if tokens.is_empty() || !saw_data_dir {
        return Err("the built-in example config has no token or data_dir line to fill in".into());
    }
    Ok(Generated {
        toml: text,
        tokens,
        admin_password: random_password(),
    })
}

/// Writes the config at `path` (never over an existing file; mode 0640), checks that it
/// loads and that `run` accepts it, and creates the admin user in its local store.
pub async fn run(path: &Path, data_dir: Option<PathBuf>) -> anyhow::Result<Generated> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("data"),
    };
    let data_dir = std::path::absolute(&data_dir)?;
    let generated = generate(&data_dir).map_err(anyhow::Error::msg)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(generated.toml.as_bytes())?;
    file.sync_all()?;
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let refused = config.run_problems();
    if !refused.is_empty() {
        anyhow::bail!("the generated config is refused: {}", refused.join("; "));
    }
    std::fs::create_dir_all(&config.storage.data_dir)?;
    let store = LocalStore::open(&config.storage).await?;
    let users = UserStore::new(store.pool().clone());
    let added = users
        .add(ADMIN_USER, Role::Admin, None, &generated.admin_password)
        .await;
    store.close().await;
    added?;
    Ok(generated)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_generated_config_loads_is_accepted_by_run_and_has_fresh_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("state");
        let one = generate(&data).unwrap();
        let two = generate(&data).unwrap();
        assert_eq!(one.tokens.len(), 2);
        assert!(one
            .tokens
            .iter()
            .all(|(_, role, t)| !role.is_empty() && t.len() == 48));
        assert_ne!(one.tokens[0].2, two.tokens[0].2);
        assert_ne!(one.admin_password, two.admin_password);
        assert!(!one.toml.contains("secret-change-me"));
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, &one.toml).unwrap();
        let config = Config::load(&path).unwrap();
        assert!(
            config.run_problems().is_empty(),
            "{:?}",
            config.run_problems()
        );
        assert_eq!(config.storage.data_dir, data);
        assert!(
            config.devices.is_empty(),
            "sample devices are commented out"
        );
        assert!(one.toml.contains("# [[devices]]"));
        let secrets: Vec<_> = config
            .http
            .tokens
            .iter()
            .filter_map(|t| t.secret())
            .collect();
        assert_eq!(
            secrets,
            vec![one.tokens[0].2.clone(), one.tokens[1].2.clone()]
        );
    }
}
