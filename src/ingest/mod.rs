//! Ingest: sources that turn device traffic into [`IngestEvent`](crate::model::IngestEvent)s on
//! the pipeline's bounded channel. Each source sends one device's readings in order.

pub mod mqtt;
