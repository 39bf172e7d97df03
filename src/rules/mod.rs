//! Rules: device profiles (points, units, physical ranges, default rules) and the engine that
//! evaluates every reading against them, in order per sensor, and emits
//! [`ConditionChange`](crate::model::ConditionChange)s for the alarm manager.
//!
//! `config` holds the serde types of `config/profiles.toml` and of `[rules]`, `validation` their cross-checks
//! (methods of [`ProfileSet`]), and `engine/` the state machine, one file per rule kind. Rule
//! behaviour is specified by the cases in `testdata/cases/`, one TOML file each, run by one test
//! (`engine/cases.rs` describes the format). The default thresholds and their sources are
//! listed in `docs/thresholds.md`.

pub mod config;
pub mod engine;
mod validation;

pub use config::{PointKind, Profile, ProfileSet, RuleKind, RuleOverride, RuleSpec, RulesConfig};
pub use engine::{EngineStats, PointCheck, RuleEngine, UnknownProfile};
