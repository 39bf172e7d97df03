//! The load-time check of actions against the rules: an action runs only when a rule of its
//! device's profile names it, so one that no rule names is a typo or a leftover and would
//! silently never run. `crate::config` calls [`problems`] with the rest of its cross-checks;
//! each `[[modbus.actions]]` entry itself is checked by `ModbusConfig::validate`.

use crate::ingest::modbus::ModbusConfig;
use crate::rules::config::ProfileSet;

/// Every configured action no rule can run, naming the action, its device and the profile.
pub fn problems(modbus: &ModbusConfig, profiles: &ProfileSet) -> Vec<String> {
    let mut problems = Vec::new();
    for action in &modbus.actions {
        // A missing or ambiguous device is reported by `modbus.validate()`.
        let [device] = modbus.action_devices(action)[..] else {
            continue;
        };
        let who = format!(
            "modbus action `{}` of device {}",
            action.name,
            device.device_key()
        );
        match &device.profile {
            None => problems.push(format!(
                "{who}: the device has no profile, so no rule can run the action"
            )),
            // An unknown profile is reported with the device.
            Some(profile) if !profiles.profiles.contains_key(profile) => {}
            Some(profile) if !profiles.names_action(profile, &action.name) => problems.push(format!(
                "{who}: no rule of profile `{profile}` names it (`action = \"{}\"`), so it would never run",
                action.name
            )),
            Some(_) => {}
        }
    }
    problems
}
