//! `[alarms]`: how alarm events fan out (the live stream and the MQTT copy).

use serde::Deserialize;

/// `[alarms]`: fan-out of alarm events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    /// Publish every alarm transition to `<prefix>/<school>/alarms` (QoS 1, not retained).
    #[serde(default = "default_true")]
    pub publish_mqtt: bool,
    /// Events kept for slow SSE clients; a client further behind gets a `resync` event.
    #[serde(default = "default_stream_buffer")]
    pub stream_buffer: usize,
}

fn default_true() -> bool {
    true
}
fn default_stream_buffer() -> usize {
    1024
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        Self {
            publish_mqtt: true,
            stream_buffer: default_stream_buffer(),
        }
    }
}

impl AlarmsConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.stream_buffer == 0 {
            problems.push("alarms.stream_buffer must be at least 1".into());
        }
        problems
    }
}
