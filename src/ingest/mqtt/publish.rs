//! The alarm copy over MQTT: every alarm transition the core hands over is published to
//! `<prefix>/<school>/alarms` (QoS 1, not retained) on the gateway's own MQTT connection, for
//! panels and other systems that listen on the broker. The core hands events over with
//! `try_send` and drops (and counts) what does not fit, so this task never slows an alarm.

use std::sync::Arc;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tracing::warn;

use crate::alarms::AlarmEvent;

/// Publishes alarm events until the core drops its sender or the connection is gone.
pub async fn publish_alarms(
    client: AsyncClient,
    prefix: String,
    mut rx: mpsc::Receiver<Arc<AlarmEvent>>,
) {
    while let Some(event) = rx.recv().await {
        let topic = format!("{prefix}/{}/alarms", event.alarm.school);
        let payload = match serde_json::to_vec(&*event) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "alarm event not encodable");
                continue;
            }
        };
        if let Err(e) = client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
        {
            warn!(error = %e, "alarm publish failed; MQTT connection closed");
            break;
        }
    }
}
