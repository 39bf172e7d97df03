//! `[http]`: the API listener and who may do what.

use std::net::SocketAddr;

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
            .or_else(|| self.token.clone())
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    64 * 1024
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_read: false,
            max_body_bytes: default_max_body(),
            tokens: Vec::new(),
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut secrets = std::collections::HashSet::new();
        for t in &self.tokens {
            if t.name.is_empty() || !names.insert(t.name.clone()) {
                problems.push(format!("http.tokens: name `{}` empty or duplicate", t.name));
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
                    "http.tokens `{}`: no token (set `token`, or `token_env` to a set variable)",
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
        problems
    }
}
