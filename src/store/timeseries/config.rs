//! The `[timeseries]` config section: which store to write to (InfluxDB v2, InfluxDB 1.x /
//! compatible `/write`, or none), how to batch, and how big the disk spool may grow.
//!
//! Parsed once at load (`deny_unknown_fields`, named defaults, humantime durations) and
//! cross-checked by [`TimeseriesConfig::validate`], which collects every problem. Secrets (the
//! token) never appear in `Debug` output.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Which time-series store the sink writes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeseriesKind {
    /// InfluxDB 2.x `/api/v2/write` (also VictoriaMetrics and other stores that speak it).
    #[serde(rename = "influxdb2")]
    InfluxDb2,
    /// InfluxDB 1.x `/write` (also VictoriaMetrics, QuestDB, ... that speak it).
    #[serde(rename = "influxdb1")]
    InfluxDb1,
    /// No time-series store: readings are only kept in the local history.
    #[default]
    None,
}

/// What happens when the disk spool has reached `spool_max_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFull {
    /// Delete the oldest spooled segment (counted in `dropped_lines`, logged) to make room.
    /// Ingest and the alarm path keep running.
    #[default]
    DropOldest,
    /// Stop taking batches from the pipeline until the spool has room again. No reading is
    /// lost, but the pipeline (and everything behind it, alarms included) waits.
    Backpressure,
}

/// How boolean points (`smoke`, `fan_on`, `door_open`, ...) are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoolEncoding {
    /// `value=1` / `value=0` as a float. InfluxDB fixes a field's type per measurement, and a
    /// profile such as `chem_cabinet` mixes numeric and boolean points under one measurement:
    /// writing `value=true` after `value=24.5` is rejected there ("field type conflict").
    #[default]
    Float,
    /// `value=true` / `value=false`: only for stores without per-measurement field types.
    Boolean,
}

/// The `[timeseries]` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeseriesConfig {
    #[serde(default)]
    pub kind: TimeseriesKind,
    /// Base URL of the store, e.g. `http://127.0.0.1:8086` (a path prefix is kept).
    #[serde(default)]
    pub url: String,
    /// InfluxDB v2 organisation.
    #[serde(default)]
    pub org: Option<String>,
    /// InfluxDB v2 bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// API token (v2, or v1 stores that take `Authorization: Token`). Prefer `token_env`.
    #[serde(default)]
    pub token: Option<String>,
    /// Name of an environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the token (a relative name is a systemd credential, `crate::secrets`).
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// InfluxDB 1.x database.
    #[serde(default)]
    pub database: Option<String>,
    /// InfluxDB 1.x retention policy (the database default when absent).
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// InfluxDB 1.x user for basic auth.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of an environment variable holding the 1.x password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the 1.x password (a relative name is a systemd credential).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// Lines per write request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// A partial batch is written after this long.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Send request bodies gzip-compressed.
    #[serde(default)]
    pub gzip: bool,
    /// Upper bound of the disk spool in `<data_dir>/spool/`.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    #[serde(default)]
    pub spool_full: SpoolFull,
    /// Timeout of one write request (connect included).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest wait between retries while the store is down (a `Retry-After` from the store is
    /// honoured even when longer, up to 10 minutes).
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    #[serde(default)]
    pub bool_encoding: BoolEncoding,
}

fn default_batch_size() -> usize {
    5000
}

fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_spool_max_bytes() -> u64 {
    1 << 30
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Default for TimeseriesConfig {
    fn default() -> Self {
        Self {
            kind: TimeseriesKind::None,
            url: String::new(),
            org: None,
            bucket: None,
            token: None,
            token_env: None,
            token_file: None,
            database: None,
            retention_policy: None,
            username: None,
            password_env: None,
            password_file: None,
            batch_size: default_batch_size(),
            flush_interval: default_flush_interval(),
            gzip: false,
            spool_max_bytes: default_spool_max_bytes(),
            spool_full: SpoolFull::default(),
            timeout: default_timeout(),
            max_backoff: default_max_backoff(),
            bool_encoding: BoolEncoding::default(),
        }
    }
}

/// The smallest spool that can hold a few batches; below this the bound is meaningless.
pub const MIN_SPOOL_BYTES: u64 = 1 << 20;

/// Largest batch accepted; InfluxDB's default body limit is 25 MB.
pub const MAX_BATCH_SIZE: usize = 100_000;

impl TimeseriesConfig {
    /// Every problem of this section, as `timeseries.<key>: message`; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(format!("timeseries.{key}: {message}"));
        };
        if self.kind == TimeseriesKind::None {
            return problems;
        }
        if let Err(message) = parse_base_url(&self.url) {
            problem("url", message);
        }
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        match self.kind {
            TimeseriesKind::InfluxDb2 => {
                if blank(&self.org) {
                    problem("org", "is required for kind = \"influxdb2\"".into());
                }
                if blank(&self.bucket) {
                    problem("bucket", "is required for kind = \"influxdb2\"".into());
                }
                for (key, value) in [
                    ("database", &self.database),
                    ("retention_policy", &self.retention_policy),
                    ("username", &self.username),
                    ("password_env", &self.password_env),
                ] {
                    if value.is_some() {
                        problem(key, "only applies to kind = \"influxdb1\"".into());
                    }
                }
                if self.password_file.is_some() {
                    problem(
                        "password_file",
                        "only applies to kind = \"influxdb1\"".into(),
                    );
                }
            }
            TimeseriesKind::InfluxDb1 => {
                if blank(&self.database) {
                    problem("database", "is required for kind = \"influxdb1\"".into());
                }
                for (key, value) in [("org", &self.org), ("bucket", &self.bucket)] {
                    if value.is_some() {
                        problem(key, "only applies to kind = \"influxdb2\"".into());
                    }
                }
                if self.password_env.is_some() && blank(&self.username) {
                    problem("password_env", "needs `username` as well".into());
                }
                if self.username.is_some()
                    && (self.token.is_some()
                        || self.token_env.is_some()
                        || self.token_file.is_some())
                {
                    problem(
                        "username",
                        "use either username/password_env or a token".into(),
                    );
                }
            }
            TimeseriesKind::None => {}
        }
        let tokens = [
            self.token.is_some(),
            self.token_env.is_some(),
            self.token_file.is_some(),
        ];
        if tokens.iter().filter(|set| **set).count() > 1 {
            problem(
                "token",
                "set one of `token`, `token_env` and `token_file`".into(),
            );
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            problem(
                "password_file",
                "set either `password_env` or `password_file`, not both".into(),
            );
        }
        if self.password_file.is_some() && blank(&self.username) {
            problem("password_file", "needs `username` as well".into());
        }
        for (key, file) in [
            ("token_file", &self.token_file),
            ("password_file", &self.password_file),
        ] {
            if let Some(Err(e)) = file.as_deref().map(crate::secrets::read) {
                problem(key, e);
            }
        }
        for (key, value) in [
            ("token_env", &self.token_env),
            ("password_env", &self.password_env),
        ] {
            if let Some(name) = value {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    problem(key, format!("{name:?} is not an environment variable name"));
                }
            }
        }
        if self.batch_size == 0 {
            problem("batch_size", "must be at least 1".into());
        } else if self.batch_size > MAX_BATCH_SIZE {
            problem("batch_size", format!("must be at most {MAX_BATCH_SIZE}"));
        }
        if self.flush_interval.is_zero() {
            problem("flush_interval", "must be longer than 0s".into());
        }
        if self.timeout.is_zero() {
            problem("timeout", "must be longer than 0s".into());
        }
        if self.max_backoff.is_zero() {
            problem("max_backoff", "must be longer than 0s".into());
        }
        if self.spool_max_bytes < MIN_SPOOL_BYTES {
            problem(
                "spool_max_bytes",
                format!("must be at least {MIN_SPOOL_BYTES} (1 MiB)"),
            );
        }
        problems
    }

    /// The token from `token` or the variable named by `token_env`.
    pub fn resolve_token(&self) -> Result<Option<String>, String> {
        if let Some(token) = &self.token {
            return Ok(Some(token.clone()));
        }
        if let Some(file) = &self.token_file {
            return crate::secrets::read(file).map(Some);
        }
        self.token_env.as_deref().map(read_env).transpose()
    }

    /// The 1.x password from the variable named by `password_env`.
    pub fn resolve_password(&self) -> Result<Option<String>, String> {
        if let Some(file) = &self.password_file {
            return crate::secrets::read(file).map(Some);
        }
        self.password_env.as_deref().map(read_env).transpose()
    }
}

fn read_env(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => Err(format!("environment variable {name} is empty")),
        Err(_) => Err(format!("environment variable {name} is not set")),
    }
}

/// Parses the store URL: `http` or `https`, with a host, no query or fragment.
pub fn parse_base_url(url: &str) -> Result<reqwest::Url, String> {
    if url.trim().is_empty() {
        return Err("is required".into());
    }
    // Messages show the URL with its credentials masked.
    let shown = crate::redact::url(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{shown:?} must start with http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{shown:?} must not have a query or fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials (use token_env or username/password_env)".into());
    }
    Ok(parsed)
}

impl fmt::Debug for TimeseriesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("TimeseriesConfig")
            .field("kind", &self.kind)
            .field("url", &crate::redact::url(&self.url))
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("token", &redacted(&self.token))
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("database", &self.database)
            .field("retention_policy", &self.retention_policy)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("gzip", &self.gzip)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("spool_full", &self.spool_full)
            .field("timeout", &self.timeout)
            .field("max_backoff", &self.max_backoff)
            .field("bool_encoding", &self.bool_encoding)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TimeseriesConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn an_empty_section_means_no_store_and_the_documented_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.kind, TimeseriesKind::None);
        assert_eq!(config.batch_size, 5000);
        assert_eq!(config.flush_interval, Duration::from_secs(1));
        assert_eq!(config.spool_full, SpoolFull::DropOldest);
        assert_eq!(config.bool_encoding, BoolEncoding::Float);
        assert!(!config.gzip);
        assert!(config.validate().is_empty());
    }

    #[test]
    fn a_full_v2_section_parses_and_validates() {
        let config = parse(
            r#"
            kind = "influxdb2"
            url = "https://influx.example:8086/prefix"
            org = "district"
            bucket = "campus"
            token_env = "CAMPUSGUARD_INFLUX_TOKEN"
            batch_size = 2000
            flush_interval = "500ms"
            gzip = true
            spool_max_bytes = 104857600
            spool_full = "backpressure"
            timeout = "5s"
            "#,
        )
        .unwrap();
        assert_eq!(config.kind, TimeseriesKind::InfluxDb2);
        assert_eq!(config.flush_interval, Duration::from_millis(500));
        assert_eq!(config.spool_full, SpoolFull::Backpressure);
        assert_eq!(config.validate(), Vec::<String>::new());
    }

    #[test]
    fn a_v1_section_with_basic_auth_parses_and_validates() {
        let config = parse(
            r#"
            kind = "influxdb1"
            url = "http://127.0.0.1:8086"
            database = "campus"
            retention_policy = "autogen"
            username = "gateway"
            password_env = "CAMPUSGUARD_INFLUX_PASSWORD"
            "#,
        )
        .unwrap();
        assert_eq!(config.validate(), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_and_unknown_kinds_are_rejected_at_load() {
        assert!(parse("kind = \"influxdb3\"").is_err());
        assert!(parse("buckett = \"x\"").is_err());
        assert!(parse("flush_interval = \"soon\"").is_err());
        assert!(parse("spool_full = \"block\"").is_err());
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let config = parse(
            r#"
            kind = "influxdb2"
            url = "not a url"
            batch_size = 0
            flush_interval = "0s"
            spool_max_bytes = 10
            token = "t"
            token_env = "T"
            database = "x"
            "#,
        )
        .unwrap();
        let problems = config.validate();
        for key in [
            "url",
            "org",
            "bucket",
            "batch_size",
            "flush_interval",
            "spool_max_bytes",
            "token",
            "database",
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("timeseries.{key}:"))),
                "no problem for {key} in {problems:?}"
            );
        }
    }

    #[test]
    fn v1_needs_a_database_and_a_username_for_its_password() {
        let config = parse(
            r#"
            kind = "influxdb1"
            url = "http://127.0.0.1:8086"
            password_env = "P"
            org = "o"
            "#,
        )
        .unwrap();
        let problems = config.validate();
        assert!(problems
            .iter()
            .any(|p| p.starts_with("timeseries.database:")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("timeseries.password_env:")));
        assert!(problems.iter().any(|p| p.starts_with("timeseries.org:")));
    }

    #[test]
    fn urls_that_would_make_a_client_panic_are_reported_not_accepted() {
        for bad in [
            "",
            "localhost:8086",
            "ftp://host",
            "http://",
            "http://h:99999",
            "http://h/?db=x",
            "http://user:pw@h:8086",
            "\u{0}",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_base_url("http://[::1]:8086").is_ok());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = TimeseriesConfig {
            token: Some("s3cr3t-token".into()),
            ..TimeseriesConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn the_token_comes_from_the_named_environment_variable() {
        let config = TimeseriesConfig {
            token_env: Some("CAMPUSGUARD_TEST_TS_TOKEN_UNSET_4711".into()),
            ..TimeseriesConfig::default()
        };
        assert!(config.resolve_token().unwrap_err().contains("not set"));
        let inline = TimeseriesConfig {
            token: Some("abc".into()),
            ..TimeseriesConfig::default()
        };
        assert_eq!(inline.resolve_token().unwrap().as_deref(), Some("abc"));
    }

    #[test]
    fn the_token_and_password_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "influx-token-from-a-file\n").unwrap();
        let config = TimeseriesConfig {
            kind: TimeseriesKind::InfluxDb2,
            url: "http://127.0.0.1:8086".into(),
            org: Some("o".into()),
            bucket: Some("b".into()),
            token_file: Some(token.clone()),
            ..TimeseriesConfig::default()
        };
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(
            config.resolve_token().unwrap().as_deref(),
            Some("influx-token-from-a-file")
        );
        let missing = TimeseriesConfig {
            token_file: Some(dir.path().join("missing")),
            ..config.clone()
        };
        assert!(missing
            .validate()
            .iter()
            .any(|p| p.starts_with("timeseries.token_file: cannot read")));
        let v1 = TimeseriesConfig {
            kind: TimeseriesKind::InfluxDb1,
            org: None,
            bucket: None,
            token_file: None,
            database: Some("campus".into()),
            username: Some("gw".into()),
            password_file: Some(token),
            ..config
        };
        assert!(v1.validate().is_empty(), "{:?}", v1.validate());
        assert_eq!(
            v1.resolve_password().unwrap().as_deref(),
            Some("influx-token-from-a-file")
        );
    }
}
