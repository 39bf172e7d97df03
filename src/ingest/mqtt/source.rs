//! The MQTT connection: subscribe (again on every ConnAck, rumqttc #250), poll the event loop,
//! decode, and send events to the pipeline. Reconnects with capped exponential backoff (rumqttc
//! has none of its own, #703) and logs each connection state change once.
//!
//! One wake-up per batch: after a publication, the messages rumqttc has already read from the
//! socket (and those the socket already holds) are taken without waiting, up to
//! [`MAX_BATCH`], and go to the core as one [`IngestEvent::Batch`] with their acks behind them.
//! The acks come back from the stores on a channel of their own and are written to the socket
//! together, one flush per batch of acks (rumqttc's own path is one request, one loop turn and
//! one write per ack).
//!
//! Back-pressure: while the pipeline channel is full this task waits in `send`, stops polling
//! the event loop, and so stops reading the socket; the broker keeps the messages (QoS 1,
//! persistent session). Nothing is dropped here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, PubAck, Publish,
    QoS, Request, Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::decode::{self, Reject, TopicKind};
use super::MqttConfig;
use crate::metrics::Metrics;
use crate::model::{now_ms, Acknowledge, DeviceKey, DurableAck, IngestEvent};

/// Requests queued towards the broker (subscriptions, alarm publications, acks). Large enough
/// for every ack that can be outstanding (the broker never has more than 65,535 QoS 1 messages
/// in flight to us), so queueing an ack never fails or waits; the queue only grows that far
/// when it holds acks.
const REQUEST_CHANNEL_CAPACITY: usize = 65_536 + 1024;
/// Messages handed to the core in one batch, at most. QoS 1 batches are also bounded by the
/// broker's in-flight window (their acks are held until the readings are durable); the ingest
/// channel's memory bound is its capacity times this.
pub const MAX_BATCH: usize = 64;
/// Acks written to the socket per flush, at most.
const ACKS_PER_FLUSH: usize = 1024;
/// How long writing a batch of acks may take (a broker that stops reading): beyond, they
/// count as failed and the next poll finds the connection's fault.
const ACK_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds rumqttc options from the config (validated before).
pub fn connect_options(config: &MqttConfig, client_id: &str) -> Result<MqttOptions, String> {
    let addr = config.broker_address()?;
    let mut options = MqttOptions::new(client_id, addr.host, addr.port);
    options
        .set_keep_alive(config.keep_alive)
        .set_clean_session(config.clean_session)
        .set_max_packet_size(config.max_packet_bytes, config.max_packet_bytes)
        .set_inflight(config.inflight)
        .set_manual_acks(config.ack_after_commit)
        .set_request_channel_capacity(REQUEST_CHANNEL_CAPACITY);
    if let Some(user) = &config.username {
        options.set_credentials(user, config.resolved_password().unwrap_or_default());
    }
    if addr.tls {
        let tls = config
            .tls
            .as_ref()
            .ok_or("mqtts:// needs [mqtt.tls] ca_file")?;
        let ca = std::fs::read(&tls.ca_file)
            .map_err(|e| format!("mqtt.tls.ca_file {}: {e}", tls.ca_file.display()))?;
        let client_auth = match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => Some((
                std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?,
                std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?,
            )),
            _ => None,
        };
        options.set_transport(Transport::tls(ca, client_auth, None));
    }
    Ok(options)
}

/// The gateway's MQTT connection: the client half publishes alarms; the event loop half is
/// driven by [`run`].
pub struct MqttLink {
    pub client: AsyncClient,
    pub event_loop: EventLoop,
}

impl MqttLink {
    pub fn new(config: &MqttConfig) -> Result<Self, String> {
        let options = connect_options(config, &config.client_id)?;
        let (client, event_loop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
        Ok(Self { client, event_loop })
    }
}

/// Runs the ingest loop until `shutdown` is cancelled or the pipeline closes. Traffic for the
/// devices in `modbus_devices` (polled over Modbus) is refused as `source_mismatch`.
pub async fn run(
    config: MqttConfig,
    modbus_devices: HashSet<DeviceKey>,
    link: MqttLink,
    tx: mpsc::Sender<IngestEvent>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let MqttLink {
        client,
        mut event_loop,
    } = link;
    let prefix = config.topic_prefix.clone();
    let filters: Vec<String> = ["telemetry", "telemetry/+", "meta", "status"]
        .iter()
        .map(|kind| format!("{prefix}/+/+/{kind}"))
        .collect();
    // Room for every ack that can be outstanding (as the request queue above), so releasing
    // one never waits; should it be full anyway, the ack takes rumqttc's own request queue.
    let (ack_tx, mut ack_rx) = mpsc::channel(REQUEST_CHANNEL_CAPACITY);
    let acker: Arc<dyn Acknowledge> = Arc::new(MqttAcker {
        client: client.clone(),
        acks: ack_tx,
        metrics: metrics.clone(),
    });
    let mut backoff = config.reconnect_min;
    let mut connected = false;
    let mut ack_ids: Vec<u16> = Vec::with_capacity(ACKS_PER_FLUSH);
    // An event the batch drain read but does not handle itself (a connection error, a
    // SubAck): handled next, before polling again.
    let mut next: Option<Result<Event, ConnectionError>> = None;
    loop {
        let event = match next.take() {
            Some(event) => event,
            None => tokio::select! {
                _ = shutdown.cancelled() => break,
                n = ack_rx.recv_many(&mut ack_ids, ACKS_PER_FLUSH) => {
                    if n > 0 {
                        write_acks(&mut event_loop, &ack_ids, &metrics).await;
                        ack_ids.clear();
                    }
                    continue;
                }
                event = event_loop.poll() => event,
            },
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(url = %config.url, session_present = ack.session_present, "MQTT connected");
                connected = true;
                metrics.mqtt_connected.set(1);
                backoff = config.reconnect_min;
                // Subscribing from this task could deadlock on a full request channel
                // (rumqttc #1025): hand it to a short-lived task.
                let client = client.clone();
                let filters = filters.clone();
                tokio::spawn(async move {
                    let subs = filters
                        .into_iter()
                        .map(|path| rumqttc::SubscribeFilter::new(path, QoS::AtLeastOnce));
                    if let Err(e) = client.subscribe_many(subs).await {
                        warn!(error = %e, "MQTT subscribe failed");
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let mut events = Vec::new();
                let mut acks = Vec::new();
                let mut take = |publish: &Publish| {
                    events.extend(handle_publish(&config, &modbus_devices, publish, &metrics));
                    // The ack travels behind the readings and is released once they are
                    // durable; a rejected message is acknowledged the same way, in order.
                    if config.ack_after_commit && publish.qos != QoS::AtMostOnce {
                        acks.push(DurableAck::new(acker.clone(), publish.pkid));
                    }
                };
                take(&publish);
                // What is already read (or readable) without waiting joins this batch.
                let mut taken = 1;
                while taken < MAX_BATCH {
                    match event_loop.poll().now_or_never() {
                        Some(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                            take(&publish);
                            taken += 1;
                        }
                        Some(Ok(Event::Outgoing(_) | Event::Incoming(Packet::PingResp))) => {}
                        Some(other) => {
                            next = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                let batch = match (events.len(), acks.is_empty()) {
                    (0, true) => continue,
                    (1, true) => events.pop(),
                    _ => Some(IngestEvent::Batch { events, acks }),
                };
                if let Some(batch) = batch {
                    if tx.send(batch).await.is_err() {
                        debug!("pipeline closed; MQTT ingest stops");
                        break;
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    .count();
                if refused > 0 {
                    warn!(refused, "MQTT broker refused subscriptions");
                } else {
                    info!(topics = %filters.join(" "), "MQTT subscribed");
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_connected.set(0);
                metrics.mqtt_connection_errors.inc();
                if connected {
                    warn!(url = %config.url, error = %e, "MQTT connection lost; reconnecting");
                    connected = false;
                } else {
                    debug!(url = %config.url, error = %e, retry_in = ?backoff, "MQTT connect failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.reconnect_max);
            }
        }
    }
    metrics.mqtt_connected.set(0);
    // Best effort: tell the broker we leave on purpose (a timeout keeps shutdown bounded).
    let _ = tokio::time::timeout(Duration::from_millis(200), client.disconnect()).await;
}

/// Hands PUBACKs for messages whose readings are durable to the ingest task, which writes them
/// in batches ([`write_acks`]).
struct MqttAcker {
    client: AsyncClient,
    acks: mpsc::Sender<u16>,
    metrics: Arc<Metrics>,
}

impl Acknowledge for MqttAcker {
    fn acknowledge(&self, id: u16) {
        // Never blocks: the channel has room for every ack that can be outstanding.
        let Err(e) = self.acks.try_send(id) else {
            return;
        };
        if matches!(e, mpsc::error::TrySendError::Closed(_)) {
            // Ingest stopped: the broker delivers the message again after the restart.
            self.metrics.mqtt_acks_failed.inc();
            return;
        }
        // Full (cannot happen while the broker keeps within 65,535 in flight): rumqttc's own
        // request queue, which fails only when the connection is gone.
        let mut publish = Publish::new("", QoS::AtLeastOnce, Vec::new());
        publish.pkid = id;
        if self.client.try_ack(&publish).is_err() {
            self.metrics.mqtt_acks_failed.inc();
        }
    }
}

/// Writes PUBACKs for `ids` to the broker with one flush. Not connected, or a write failing:
/// counted in `campusguard_mqtt_acks_failed_total`; the broker delivers those messages again
/// (at least once), and the connection error comes out of the next poll.
async fn write_acks(event_loop: &mut EventLoop, ids: &[u16], metrics: &Metrics) {
    let Some(network) = event_loop.network.as_mut() else {
        metrics.mqtt_acks_failed.inc_by(ids.len() as u64);
        return;
    };
    let state = &mut event_loop.state;
    let write = async {
        let mut written = 0;
        for &id in ids {
            // Through rumqttc's state (it keeps its bookkeeping, e.g. the keep-alive clock).
            match state.handle_outgoing_packet(Request::PubAck(PubAck::new(id))) {
                Ok(Some(packet)) => {
                    if network.write(packet).await.is_err() {
                        break;
                    }
                    written += 1;
                }
                Ok(None) => written += 1,
                Err(_) => break,
            }
        }
        if written > 0 && network.flush().await.is_err() {
            written = 0;
        }
        written
    };
    let written = tokio::time::timeout(ACK_WRITE_TIMEOUT, write)
        .await
        .unwrap_or(0);
    // The state queued an `Outgoing(PubAck)` event per ack; nobody reads them.
    event_loop
        .state
        .events
        .retain(|e| !matches!(e, Event::Outgoing(Outgoing::PubAck(_))));
    if written < ids.len() {
        metrics
            .mqtt_acks_failed
            .inc_by((ids.len() - written) as u64);
    }
}

/// Decodes one publication into an event, counting and logging what is rejected.
fn handle_publish(
    config: &MqttConfig,
    modbus_devices: &HashSet<DeviceKey>,
    publish: &Publish,
    metrics: &Metrics,
) -> Option<IngestEvent> {
    let topic = publish.topic.as_str();
    let reject = |reason: Reject| {
        metrics.reject(reason, topic);
        None
    };
    let (device, kind) = match decode::parse_topic(&config.topic_prefix, topic) {
        Ok(parsed) => parsed,
        Err(reason) => return reject(reason),
    };
    // The config says this device speaks Modbus: readings, meta or status claiming to be it
    // over MQTT are someone else's (and could trigger its write-back actions).
    if modbus_devices.contains(&device) {
        return reject(Reject::SourceMismatch);
    }
    let payload = &publish.payload[..];
    if payload.len() > config.max_payload_bytes {
        return reject(Reject::TooLarge);
    }
    match kind {
        TopicKind::Telemetry => {
            match decode::decode_telemetry(&device, payload, config.max_points, now_ms()) {
                Ok(decoded) => {
                    for reason in decoded.rejected {
                        metrics.reject(reason, topic);
                    }
                    (!decoded.readings.is_empty())
                        .then_some(IngestEvent::Readings(decoded.readings))
                }
                Err(reason) => reject(reason),
            }
        }
        TopicKind::SinglePoint(point) => {
            match decode::decode_single_point(
                &device,
                point,
                payload,
                config.max_payload_bytes,
                now_ms(),
            ) {
                Ok(reading) => Some(IngestEvent::Readings(vec![reading])),
                Err(reason) => reject(reason),
            }
        }
        TopicKind::Meta => match decode::decode_meta(payload) {
            Ok(Some(info)) => Some(IngestEvent::Meta { device, info }),
            Ok(None) => None,
            Err(reason) => reject(reason),
        },
        TopicKind::Status => match decode::decode_status(payload) {
            Ok(Some(online)) => Some(IngestEvent::Status {
                device,
                online,
                ts_ms: now_ms(),
            }),
            Ok(None) => None,
            Err(reason) => reject(reason),
        },
    }
}
