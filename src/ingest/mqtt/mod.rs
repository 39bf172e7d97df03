//! MQTT ingest (device protocol v1): subscribe to telemetry, meta and status topics, decode and
//! validate payloads, send [`IngestEvent`](crate::model::IngestEvent)s to the pipeline.

mod config;
pub mod decode;
mod source;

pub use config::{MqttConfig, MqttTlsConfig};
pub use source::{connect_options, run, MqttLink};
