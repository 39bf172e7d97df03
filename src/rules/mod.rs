//! Rules: device profiles (points, units, physical ranges, default rules) and the engine that
//! evaluates every reading against them, in order per sensor, and emits
//! [`ConditionChange`](crate::model::ConditionChange)s for the alarm manager.

pub mod config;
pub mod engine;

pub use config::{ProfileSet, RuleOverride};
pub use engine::{PointCheck, RuleEngine};
