//! `[mqtt]`: how the gateway connects to the broker and what it accepts.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[mqtt]` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS; needs `tls.ca_file`).
    #[serde(default = "default_url")]
    pub url: String,
    /// Stable client id: with `clean_session = false` the broker keeps the gateway's
    /// subscriptions and queues QoS 1 messages while it is away.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub clean_session: bool,
    /// First topic level(s) of device protocol v1 (`campus`); tests use their own.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Name of an environment variable holding the password (preferred over `password`).
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password (a relative name is a systemd credential).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub tls: Option<MqttTlsConfig>,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Telemetry payloads larger than this are rejected (`too_large`).
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// Largest MQTT packet the client accepts at all. Kept well above `max_payload_bytes` so an
    /// oversized payload is rejected with a counter instead of breaking the connection (which,
    /// with a persistent session, would make the broker redeliver it forever).
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: usize,
    /// At most this many points in one telemetry message.
    #[serde(default = "default_max_points")]
    pub max_points: usize,
    /// Reconnect backoff: starts here, doubles per failure, capped at `reconnect_max`.
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// QoS 1 messages in flight from the broker.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    /// Acknowledge a QoS 1 message only once its readings are committed to the local store
    /// (at-least-once: after a crash the broker delivers it again). Off = acknowledge on
    /// receipt.
    #[serde(default = "default_true")]
    pub ack_after_commit: bool,
}

fn default_true() -> bool {
    true
}

/// `[mqtt.tls]`: PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    pub ca_file: PathBuf,
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

fn default_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn default_client_id() -> String {
    "campusguard-gateway".into()
}
fn default_prefix() -> String {
    "campus".into()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_max_payload() -> usize {
    64 * 1024
}
fn default_max_packet() -> usize {
    16 * 1024 * 1024
}
fn default_max_points() -> usize {
    64
}
fn default_reconnect_min() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn default_inflight() -> u16 {
    100
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            client_id: default_client_id(),
            clean_session: false,
            topic_prefix: default_prefix(),
            username: None,
            password: None,
            password_env: None,
            password_file: None,
            tls: None,
            keep_alive: default_keep_alive(),
            max_payload_bytes: default_max_payload(),
            max_packet_bytes: default_max_packet(),
            max_points: default_max_points(),
            reconnect_min: default_reconnect_min(),
            reconnect_max: default_reconnect_max(),
            inflight: default_inflight(),
            ack_after_commit: true,
        }
    }
}

// Hand-written so the password never reaches a log line.
impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Host, port and whether TLS is on, from `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttConfig {
    pub fn broker_address(&self) -> Result<BrokerAddress, String> {
        // Credentials in the URL would be logged with it; they belong in username/password_env.
        // (The message leaves the URL out for the same reason, so this check comes first.)
        if self.url.contains('@') {
            return Err(
                "mqtt.url must not carry credentials (use mqtt.username and mqtt.password_env)"
                    .into(),
            );
        }
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = self.url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(format!(
                "mqtt.url `{}` must start with mqtt:// or mqtts://",
                self.url
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("mqtt.url `{}`: bad port `{p}`", self.url))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("mqtt.url `{}` has no host", self.url));
        }
        Ok(BrokerAddress {
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// The password from `password_env` (preferred) or `password`.
    pub fn resolved_password(&self) -> Option<String> {
        self.password_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok())
            .or_else(|| crate::secrets::read(self.password_file.as_deref()?).ok())
            .or_else(|| self.password.clone())
    }

    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.broker_address() {
            Ok(addr) if addr.tls && self.tls.is_none() => {
                problems.push("mqtt.url is mqtts:// but [mqtt.tls] ca_file is not set".into())
            }
            Ok(_) => {}
            Err(e) => problems.push(e),
        }
        if self.client_id.is_empty() {
            problems.push("mqtt.client_id must not be empty".into());
        }
        if self.topic_prefix.is_empty()
            || self.topic_prefix.starts_with('/')
            || self.topic_prefix.ends_with('/')
            || self.topic_prefix.contains(['+', '#'])
        {
            problems.push(format!(
                "mqtt.topic_prefix `{}` must be non-empty, without wildcards or leading/trailing '/'",
                self.topic_prefix
            ));
        }
        if let Some(name) = &self.password_env {
            if std::env::var(name).is_err() {
                problems.push(format!(
                    "mqtt.password_env names `{name}`, which is not set"
                ));
            }
        }
        if let Some(Err(e)) = self.password_file.as_deref().map(crate::secrets::read) {
            problems.push(format!("mqtt.password_file: {e}"));
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > self.max_packet_bytes {
            problems.push("mqtt.max_payload_bytes must be between 1 and max_packet_bytes".into());
        }
        if self.max_points == 0 {
            problems.push("mqtt.max_points must be at least 1".into());
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            problems.push("mqtt.reconnect_min must be > 0 and ≤ reconnect_max".into());
        }
        if self.inflight == 0 {
            problems.push("mqtt.inflight must be at least 1".into());
        }
        if let Some(tls) = &self.tls {
            for (key, file) in [
                ("ca_file", Some(&tls.ca_file)),
                ("client_cert", tls.client_cert.as_ref()),
                ("client_key", tls.client_key.as_ref()),
            ] {
                if let Some(file) = file {
                    if !file.is_file() {
                        problems.push(format!("mqtt.tls.{key} `{}` not found", file.display()));
                    }
                }
            }
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                problems.push("mqtt.tls: client_cert and client_key go together".into());
            }
        }
        problems
    }
}
