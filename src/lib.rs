//! campusguard: a safety-monitoring gateway for school campuses.
pub mod model;
pub mod rules;
pub mod store;
