//! `[http]`: the API listener, its limits against hostile clients, and who may do what.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::access::Role;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Let requests without a token read (never mutate). Off by default; the demo turns it on.
    #[serde(default)]
    pub public_read: bool,
    /// Request bodies larger than this are answered 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// A client must send a request's whole header within this, counted from the moment the
    /// gateway waits for it (also between requests on a kept-alive connection); else its
    /// connection is closed. Slow-header clients cannot hold connections for long.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request must be answered within this (body read included), else 408. The alarm stream
    /// is exempt; it ends at shutdown and when its console session ends.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Open connections at most. Beyond it the gateway stops accepting; new clients wait in
    /// the kernel's accept queue until a connection closes. Lowered at start to leave 256 file
    /// descriptors of the process's limit for MQTT, SQLite, the spool and the Modbus links.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// `[[http.tokens]]`: a bearer token with a role and an optional school scope.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who this is; journaled as the user of every action taken with the token.
    pub name: String,
    #[serde(default)]
    pub token: Option<String>,
    /// Name of an environment variable holding the token (preferred over `token`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the token (a relative name is a systemd credential, `crate::secrets`).
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    pub role: Role,
    /// Schools this token may see and act on; omitted = all.
    #[serde(default)]
    pub schools: Option<Vec<String>>,
}

// Hand-written so a token never reaches a log line.
impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("role", &self.role)
            .field("schools", &self.schools)
            .finish()
    }
}

impl TokenConfig {
    pub fn secret(&self) -> Option<String> {
        self.token_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok())
            .or_else(|| crate::secrets::read(self.token_file.as_deref()?).ok())
            .or_else(|| self.token.clone())
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    4096
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_read: false,
            max_body_bytes: default_max_body(),
            header_read_timeout: default_header_read_timeout(),
            request_timeout: default_request_timeout(),
            max_connections: default_max_connections(),
            tokens: Vec::new(),
        }
    }
}

/// Shortest bearer token `campusguard run` accepts (`check` accepts 16: examples and tests).
pub const MIN_RUN_TOKEN_CHARS: usize = 24;

/// Whether `secret` is a placeholder no real deployment may use: one of `known` (the tokens of
/// the shipped example and demo configs) or anything ending in `change-me`.
pub fn is_placeholder(secret: &str, known: &[String]) -> bool {
    secret.to_ascii_lowercase().ends_with("change-me") || known.iter().any(|k| k == secret)
}

impl HttpConfig {
    /// Why `campusguard run` refuses these tokens although they are valid: a placeholder of
    /// the example or demo config (`known`), or shorter than [`MIN_RUN_TOKEN_CHARS`]. Names
    /// the token, never its value.
    pub fn run_problems(&self, known: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        for t in &self.tokens {
            let Some(secret) = t.secret() else { continue };
            if is_placeholder(&secret, known) {
                problems.push(format!(
                    "http.tokens `{}`: the token is a placeholder of the example or demo config; set a long random one (token_env)",
                    t.name
                ));
            } else if secret.chars().count() < MIN_RUN_TOKEN_CHARS {
                problems.push(format!(
                    "http.tokens `{}`: the token is shorter than {MIN_RUN_TOKEN_CHARS} characters",
                    t.name
                ));
            }
        }
        problems
    }

    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut secrets = std::collections::HashSet::new();
        for t in &self.tokens {
            if t.name.is_empty() || !names.insert(t.name.clone()) {
                problems.push(format!("http.tokens: name `{}` empty or duplicate", t.name));
            }
            if let Some(Err(e)) = t.token_file.as_deref().map(crate::secrets::read) {
                problems.push(format!("http.tokens `{}`: token_file: {e}", t.name));
                continue;
            }
            match t.secret() {
                Some(s) if s.len() >= 16 => {
                    if !secrets.insert(s) {
                        problems.push(format!("http.tokens `{}`: token used twice", t.name));
                    }
                }
                Some(_) => problems.push(format!(
                    "http.tokens `{}`: token shorter than 16 characters",
                    t.name
                )),
                None => problems.push(format!(
                    "http.tokens `{}`: no token (set `token`, `token_file`, or `token_env` to a set variable)",
                    t.name
                )),
            }
            if t.schools.as_ref().is_some_and(Vec::is_empty) {
                problems.push(format!(
                    "http.tokens `{}`: schools = [] would allow nothing; omit it for all schools",
                    t.name
                ));
            }
        }
        if self.max_body_bytes < 1024 {
            problems.push("http.max_body_bytes must be at least 1024".into());
        }
        if self.header_read_timeout.is_zero() || self.request_timeout.is_zero() {
            problems.push("http.header_read_timeout and http.request_timeout must be > 0".into());
        }
        if self.max_connections < 16 {
            problems.push("http.max_connections must be at least 16".into());
        }
        problems
    }
}
