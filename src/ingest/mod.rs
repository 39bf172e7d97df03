//! Ingest: sources that turn device traffic into [`IngestEvent`](crate::model::IngestEvent)s on
//! the pipeline's bounded channel. Each source sends one device's readings in order.
//!
//! - [`mqtt`]: device protocol v1 over MQTT (devices push).
//! - [`modbus`]: Modbus TCP / RTU / RTU-over-TCP pollers (the gateway pulls).

pub mod modbus;
pub mod mqtt;
