//! `campusguard notify test --channel NAME --config FILE`: sends a test message on one channel
//! and prints the answer, so a site can check a robot's URL, secret and keywords before relying
//! on it. Nothing is queued or journaled.

use std::sync::Arc;

use super::channels::{Channel, Outgoing, SendError};
use super::config::NotifyConfig;
use super::message::{Directory, Renderer};
use crate::model::now_ms;
use crate::rules::ProfileSet;

/// Sends the test message; `Ok` with the channel's answer, `Err` with why not.
pub async fn test(config: &NotifyConfig, name: &str) -> Result<String, String> {
    let channel = config.channel(name).ok_or_else(|| {
        let known: Vec<&str> = config.channels.iter().map(|c| c.name.as_str()).collect();
        format!(
            "no channel `{name}` in [[notify.channels]] (known: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    })?;
    let sender = Channel::from_config(channel, config.timeout)?;
    let renderer = Renderer {
        console_url: config.console_url.clone(),
        offset_ms: config.offset_ms(),
        profiles: Arc::new(ProfileSet::default()),
        directory: Arc::new(Directory::default()),
    };
    let now = now_ms();
    let message = renderer.test(name, now);
    let keys = vec![format!("test:{name}:{now}")];
    let out = Outgoing {
        channel: name,
        keys: &keys,
        message: &message,
    };
    sender.send(&out).await.map_err(|e| match e {
        SendError::Retry {
            reason,
            rate_limited: true,
            ..
        } => format!("rate limited (the gateway would retry later): {reason}"),
        SendError::Retry { reason, .. } => {
            format!("not delivered (the gateway would retry later): {reason}")
        }
        SendError::Permanent(reason) => format!("refused: {reason}"),
    })
}
