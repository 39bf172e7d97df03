//! The Modbus poller: groups the configured devices by connection (a TCP address, or a serial
//! port), starts one [`ConnectionTask`] per connection, and, when actions are configured, the
//! dispatcher that routes their writes to the task owning the device's line.
//!
//! ```text
//! run ──► ConnectionTask per connection (connection.rs) ──► IngestEvent ──► pipeline
//!      └─► write::dispatch ──(bounded queue per connection)──┘ (writes between polls)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::config::{ConnectionKey, ModbusConfig, ModbusDeviceConfig};
use super::connection::ConnectionTask;
use super::registers::CoalesceLimits;
use super::schedule::HealthPolicy;
use super::stats::ModbusStats;
use super::write::{self, ConnectionWrite, WriteCommands, CONNECTION_WRITE_QUEUE};
use crate::model::IngestEvent;

/// Polls every configured device until `shutdown`, sending readings and status changes to
/// `out`, and writes the actions sent through the [`WriteHandle`](super::WriteHandle) paired
/// with `writes` (`None`: no action is configured). Returns after `shutdown` is cancelled and
/// every connection task has stopped (a task whose pipeline is gone stops early). Expects a
/// config that passed [`ModbusConfig::validate`]; a device without a usable address is logged
/// and skipped.
pub async fn run(
    config: ModbusConfig,
    out: mpsc::Sender<IngestEvent>,
    stats: Arc<ModbusStats>,
    writes: Option<WriteCommands>,
    shutdown: CancellationToken,
) {
    let limits = CoalesceLimits::from(&config);
    let policy = HealthPolicy {
        offline_after: config.offline_after.max(1),
        max_backoff: config.max_backoff,
    };
    let actions = write::resolve(&config);
    let mut connections: BTreeMap<ConnectionKey, Vec<ModbusDeviceConfig>> = BTreeMap::new();
    for device in config.devices {
        match device.connection_key() {
            Some(key) => connections.entry(key).or_default().push(device),
            None => {
                warn!(device = %device.id, "Modbus device has no address or serial port, not polled")
            }
        }
    }
    info!(
        connections = connections.len(),
        devices = connections.values().map(Vec::len).sum::<usize>(),
        actions = actions.len(),
        "Modbus poller starting"
    );
    let tracker = TaskTracker::new();
    let mut write_queues: HashMap<ConnectionKey, mpsc::Sender<ConnectionWrite>> = HashMap::new();
    for (key, devices) in connections {
        let mut task_writes = None;
        if writes.is_some() && actions.values().any(|a| a.connection == key) {
            let (tx, rx) = mpsc::channel(CONNECTION_WRITE_QUEUE);
            write_queues.insert(key.clone(), tx);
            task_writes = Some(rx);
        }
        let task = ConnectionTask::new(key, devices, &limits, policy, stats.clone(), task_writes);
        tracker.spawn(task.run(out.clone(), shutdown.clone()));
    }
    if let Some(writes) = writes {
        tracker.spawn(write::dispatch(
            writes,
            actions,
            write_queues,
            shutdown.clone(),
        ));
    }
    tracker.close();
    // Nothing to poll still means "running until shutdown" to the caller.
    tokio::join!(tracker.wait(), shutdown.cancelled());
}
