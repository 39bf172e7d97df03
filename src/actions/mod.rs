//! Actions: a rule names an action (`action = "exhaust_fan_on"` in a profile); when the rule's
//! alarm is raised (or comes back) on a device that configures an action of that name
//! (`[[modbus.actions]]`), the gateway writes it to the device and journals the result on the
//! alarm, e.g. switching a chemical cabinet's exhaust fan on at a gas or ventilation alarm.
//!
//! ```text
//! pipeline core: alarm Raised / Reraised, its rule names `action`
//!   ──Actions::run(alarm, action)──► one task per run (at most MAX_RUNS at once; one more is
//!   │                                refused at once, counted, and reported like a failed write)
//!   ──modbus::WriteHandle::write(device, action)──► the Modbus poller: the device's connection
//!   │                                task writes FC5/FC6/FC16 between two polls (the transport)
//!   ◄── Ok(what was written) | Err(why not)
//!   ──ActionDone, bounded channel (one slot per run: never full)──► core: Core::action_done
//!   ──outcome()──► journal transition `action` on the alarm, and raise (failed) / clear
//!                  (succeeded) the device's `action_failed:<action>` fault alarm
//! ```
//!
//! The core never waits for a device: a run is a task of its own and its result comes back to
//! the core as an event. Off unless configured: a rule naming an action its device does not
//! configure does nothing (debug log, `campusguard_modbus_actions_unmatched_total`).
//!
//! - [`runner`]: which actions exist, the run slots and deadline, the results channel.
//! - [`outcome`]: what a result does to the alarms: the journal note and the fault.
//! - `config`: the load-time check that every configured action is named by a rule.
//!
//! The config keys are the rule's `action` (`crate::rules::config`) and `[[modbus.actions]]`
//! (`crate::ingest::modbus::config`), where each is read; the fault's rule prefix
//! (`action_failed:`) is reserved by the rules, which import nothing above them.

mod config;
pub mod outcome;
pub mod runner;

use std::sync::Arc;

use crate::ingest::modbus::{self, ModbusConfig, WriteCommands};

pub use config::problems;
pub use outcome::{failed_rule, is_fault, outcome};
pub use runner::{ActionDone, ActionStats, Actions, MAX_RUNS};

/// Builds the component from the `[modbus]` section: the core's [`Actions`], and the write
/// commands the Modbus poller serves (`modbus::run`) — `None` when no action is configured.
pub fn start(config: &ModbusConfig, stats: Arc<ActionStats>) -> (Actions, Option<WriteCommands>) {
    if config.actions.is_empty() {
        return (Actions::new(config, None, stats), None);
    }
    let (handle, writes) = modbus::write_channel();
    (Actions::new(config, Some(handle), stats), Some(writes))
}
