//! Config loading on hostile TOML: parse + validate as `campusguard check` does (no
//! environment overrides; a profiles file named by the input is looked up under a folder that
//! does not exist), and the same text as a site profiles file.
#![no_main]

use std::path::Path;

use campusguard::config::Config;
use campusguard::rules::ProfileSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent-campusguard-fuzz/gateway.toml");
    if let Err(e) = Config::from_toml(text, path, Vec::new()) {
        // Error messages quote the input with positions; rendering them must not panic.
        let _ = e.to_string();
    }
    if let Ok(profiles) = ProfileSet::from_toml(text) {
        let _ = profiles.validate();
    }
});
