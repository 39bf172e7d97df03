//! Profile and rule definitions (`config/profiles.toml`). STUB: to be filled in.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSet {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile {}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {}

impl ProfileSet {
    pub fn builtin() -> Self {
        Self::default()
    }
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
    pub fn validate_override(&self, _p: &str, _r: &str, _o: &RuleOverride) -> Result<(), String> {
        Ok(())
    }
    pub fn rule_count(&self) -> usize {
        0
    }
}
