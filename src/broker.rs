//! The embedded MQTT broker (rumqttd) for a school without a broker of its own, and for the
//! demo. `Broker::start()` blocks and spawns its own threads, so it runs on a `std::thread`;
//! segment sizes are kept small (the sample's 100 MB segments would waste memory here).

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use serde::Deserialize;
use tracing::{error, info};

/// `[broker]`: the embedded MQTT broker (rumqttd), for a school without its own broker and for
/// the demo.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Start an in-process broker. The gateway still connects to `mqtt.url` like any client.
    #[serde(default)]
    pub embedded: bool,
    #[serde(default = "default_broker_listen")]
    pub listen: std::net::SocketAddr,
    /// Largest MQTT payload the embedded broker accepts, in bytes.
    #[serde(default = "default_broker_max_payload")]
    pub max_payload_bytes: usize,
}

fn default_broker_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 18830))
}
fn default_broker_max_payload() -> usize {
    2 * 1024 * 1024
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            embedded: false,
            listen: default_broker_listen(),
            max_payload_bytes: default_broker_max_payload(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker did not start listening on {0} within 5 s")]
    NotListening(std::net::SocketAddr),
}

/// Starts the embedded broker and waits until it accepts connections.
pub fn start(config: &BrokerConfig) -> Result<(), BrokerError> {
    // Fail early and clearly if the port is taken, rather than inside rumqttd's thread.
    TcpListener::bind(config.listen)
        .map_err(|source| BrokerError::Bind {
            addr: config.listen,
            source,
        })
        .map(drop)?;
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: config.max_payload_bytes,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4".into(),
        listen: config.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let broker_config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(broker_config);
            if let Err(e) = broker.start() {
                error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|source| BrokerError::Bind {
            addr: config.listen,
            source,
        })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&config.listen, Duration::from_millis(200)).is_ok()
        {
            info!(listen = %config.listen, "embedded MQTT broker started");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(config.listen))
}
