//! campusguard-sim: a simulator of school-campus safety devices that speak device protocol v1
//! over MQTT, for demos, tests and load measurements of the campusguard gateway.
//!
//! Data flow, from inventory to broker:
//!
//! - [`campus`]: schools, device profiles (point names of the protocol) and devices with their
//!   building and room; [`Campus::demo`] is a three-school campus of 45 devices.
//! - [`device`]: per-device models of normal values (mean, slow drift, seeded noise) and the
//!   telemetry JSON encoding.
//! - [`scenario`]: named scenarios (`fire`, `cabinet-overheat`, `ventilation-failure`,
//!   `device-offline`, `garbage`) and the value overrides they apply; [`garbage`]: the malformed
//!   payloads.
//! - [`sim`]: the simulation as a pure state machine (messages for a simulated time), so tests
//!   drive it without sleeping.
//! - [`publish`]: [`run`] connects to the broker and publishes the simulation in real time.
//! - [`load`]: [`load()`] publishes N devices × M points at a target rate and reports the rate
//!   achieved.
//! - [`bench`]: `campusguard-sim bench`, the end-to-end benchmark of the gateway against a
//!   private Mosquitto and VictoriaMetrics (and Node-RED as a baseline).
//! - [`cli`]: the `campusguard-sim` command line (`run`, `load`, `bench`, `list`);
//!   [`signal`]: SIGINT/SIGTERM as one future (the gateway's binary uses it too).
//!
//! The gateway's `demo` command embeds the simulator: build a [`SimConfig`] (its `Default` is
//! the demo campus on 127.0.0.1:1883 with prefix `campus`) and call [`run`] with a
//! cancellation token.

pub mod bench;
pub mod campus;
pub mod cli;
pub mod device;
pub mod garbage;
pub mod load;
pub mod modbus;
pub mod publish;
pub mod scenario;
pub mod signal;
pub mod sim;

pub use campus::{Campus, Device, PointKind, PointSpec, Profile, School};
pub use load::{load, LoadConfig, LoadReport};
pub use publish::{run, SimConfig};
pub use rumqttc::QoS;
pub use scenario::{Scenario, ScheduledScenario};
pub use signal::shutdown_signal;
pub use sim::{ConfigError, Message, MessageKind, Simulation, SimulationSettings};
