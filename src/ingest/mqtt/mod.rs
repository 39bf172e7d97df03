//! MQTT, the gateway's one connection to the broker: ingest of device protocol v1 (subscribe to
//! telemetry, meta and status topics, decode and validate payloads, send [`IngestEvent`]s to
//! the pipeline), and the alarm copy the gateway publishes back (`publish.rs`).

mod config;
pub mod decode;
mod publish;
mod source;

pub use config::{MqttConfig, MqttTlsConfig};
pub use source::{connect_options, run, MqttLink};

use std::collections::HashSet;
use std::sync::Arc;

use crate::supervisor::Supervisor;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alarms::AlarmEvent;
use crate::metrics::Metrics;
use crate::model::{DeviceKey, IngestEvent};

/// Connects (in the background) and starts the ingest task on `tasks`, and the alarm publisher
/// when `alarms` is given. Ingest stops on `stop`; the publisher when the core drops its sender.
/// MQTT traffic for a device in `modbus_devices` is refused (`source_mismatch`).
/// Fails only on a configuration the connection cannot be built from.
pub fn start(
    config: &MqttConfig,
    modbus_devices: HashSet<DeviceKey>,
    ingest: mpsc::Sender<IngestEvent>,
    alarms: Option<mpsc::Receiver<Arc<AlarmEvent>>>,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
    supervisor: &Supervisor,
) -> Result<(), String> {
    let link = MqttLink::new(config)?;
    if let Some(alarms) = alarms {
        let publish =
            publish::publish_alarms(link.client.clone(), config.topic_prefix.clone(), alarms);
        supervisor.once("mqtt-publish", publish);
    }
    let (config, metrics, stop) = (config.clone(), metrics.clone(), stop.clone());
    supervisor.once(
        "mqtt-ingest",
        run(config, modbus_devices, link, ingest, metrics, stop),
    );
    Ok(())
}
