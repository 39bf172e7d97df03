//! campusguard: a safety-monitoring gateway for school campuses.
pub mod ingest;
pub mod model;
pub mod rules;
