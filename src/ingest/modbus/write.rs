//! The Modbus transport of actions: a small handle that writes a device's `[[modbus.actions]]`
//! entry by name, between two polls of the device's connection.
//!
//! ```text
//! WriteHandle::write(cab-1, "exhaust_fan_on") ──WriteCommands (bounded)──► dispatch ──► the
//!     connection task of cab-1's line (bounded queue each; between two polls, never
//!     concurrently with them) ──► execute: FC5 / FC6 / FC16 ──► Ok(WriteReport) | Err(WriteError)
//! ```
//!
//! Create the pair with [`write_channel`]; the [`WriteCommands`] go to
//! [`run`](super::poller::run), the [`WriteHandle`] (cheap to clone) to whoever runs actions
//! (`crate::actions`, which decides when and journals the result). This module knows devices
//! and named writes, not rules or alarms.

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::codec::encode_value;
use super::config::{ActionValue, ConnectionKey, ModbusConfig};
use super::error::RequestError;
use super::link::{Link, WriteOp};
use super::stats::ModbusStats;
use crate::model::DeviceKey;

/// Write commands waiting for the dispatcher. When full, [`WriteHandle::write`] waits (the
/// caller bounds its wait; the gateway's runs have a deadline).
const WRITE_QUEUE: usize = 32;
/// Writes waiting for one connection's next gap between polls. When full, one more is
/// answered [`WriteError::Busy`] at once, so a slow line cannot hold up writes to another.
pub(crate) const CONNECTION_WRITE_QUEUE: usize = 8;

/// What a successful write did, for the alarm journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    pub action: String,
    pub device: DeviceKey,
    /// e.g. `writing coil 0 = true of unit 1 via 127.0.0.1:5020`.
    pub description: String,
}

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("device `{device}` has no Modbus action `{action}`")]
    NotOnDevice { action: String, device: DeviceKey },
    #[error("the Modbus poller is not running")]
    NotRunning,
    #[error("Modbus action `{action}`: too many writes queued for its connection")]
    Busy { action: String },
    #[error("Modbus action `{action}` on `{device}` failed: {error}")]
    Failed {
        action: String,
        device: DeviceKey,
        #[source]
        error: RequestError,
    },
}

/// A request to write one device's action, answered on `reply`.
#[derive(Debug)]
struct WriteCommand {
    action: String,
    device: DeviceKey,
    reply: oneshot::Sender<Result<WriteReport, WriteError>>,
}

/// The handle that writes actions through the poller.
#[derive(Debug, Clone)]
pub struct WriteHandle {
    tx: mpsc::Sender<WriteCommand>,
}

/// The poller's end of the write channel.
#[derive(Debug)]
pub struct WriteCommands {
    rx: mpsc::Receiver<WriteCommand>,
}

/// A connected handle / command-receiver pair (bounded queue).
pub fn write_channel() -> (WriteHandle, WriteCommands) {
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    (WriteHandle { tx }, WriteCommands { rx })
}

impl WriteHandle {
    /// Writes `device`'s action named `action` and waits for the device's answer. Names are
    /// unique per device, so one profile rule's `action = "exhaust_fan_on"` can mean a
    /// different write on every cabinet. The write is sent between two polls of its
    /// connection, so it waits at most for the poll in progress plus the device's timeout
    /// (connect and write).
    pub async fn write(&self, device: &DeviceKey, action: &str) -> Result<WriteReport, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(WriteCommand {
                action: action.to_owned(),
                device: device.clone(),
                reply,
            })
            .await
            .map_err(|_| WriteError::NotRunning)?;
        answer.await.map_err(|_| WriteError::NotRunning)?
    }
}

/// A configured action, resolved to its device, connection and request.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedWrite {
    name: String,
    device: DeviceKey,
    pub(crate) connection: ConnectionKey,
    unit: u8,
    timeout: Duration,
    op: WriteOp,
}

/// Configured actions by (device, name). Expects a validated config; an action that does not
/// resolve is logged and left out (writing it answers [`WriteError::NotOnDevice`]).
pub(crate) fn resolve(config: &ModbusConfig) -> HashMap<(DeviceKey, String), ResolvedWrite> {
    let mut resolved = HashMap::new();
    for action in &config.actions {
        let Some(device) = config.action_devices(action).first().copied() else {
            warn!(action = %action.name, "Modbus action names no configured device, ignored");
            continue;
        };
        let Some(connection) = device.connection_key() else {
            continue;
        };
        let op = match action.value {
            ActionValue::Bool(on) => WriteOp::Coil(action.address, on),
            ActionValue::Number(value) => {
                match encode_value(value, action.effective_type(), action.order) {
                    Ok(words) if words.len() == 1 => WriteOp::Register(action.address, words[0]),
                    Ok(words) => WriteOp::Registers(action.address, words),
                    Err(reason) => {
                        warn!(action = %action.name, %reason, "Modbus action value cannot be encoded, ignored");
                        continue;
                    }
                }
            }
        };
        resolved.insert(
            (device.device_key(), action.name.clone()),
            ResolvedWrite {
                name: action.name.clone(),
                device: device.device_key(),
                connection,
                unit: device.unit,
                timeout: device.timeout,
                op,
            },
        );
    }
    resolved
}

/// A resolved write on its way to the connection task that owns the device's line.
pub(crate) struct ConnectionWrite {
    write: ResolvedWrite,
    reply: oneshot::Sender<Result<WriteReport, WriteError>>,
}

impl ConnectionWrite {
    /// Runs the write on the connection task's link and answers the caller.
    pub(crate) async fn execute(self, link: &mut Link, stats: &ModbusStats) {
        let write = &self.write;
        let result = match link.write(write.unit, &write.op, write.timeout).await {
            Ok(description) => {
                ModbusStats::add(&stats.writes, 1);
                info!(action = %write.name, device = %write.device, %description, "Modbus action written");
                Ok(WriteReport {
                    action: write.name.clone(),
                    device: write.device.clone(),
                    description,
                })
            }
            Err(error) => {
                ModbusStats::add(&stats.failed_writes, 1);
                warn!(action = %write.name, device = %write.device, error = %error, "Modbus action write failed");
                Err(WriteError::Failed {
                    action: write.name.clone(),
                    device: write.device.clone(),
                    error,
                })
            }
        };
        // The caller gave up (deadline or shutdown): nobody is left to tell.
        let _ = self.reply.send(result);
    }
}

/// Routes write commands to the connection tasks until `shutdown` or until every handle is
/// gone; never waits on one connection, so a slow line cannot hold up writes to another.
pub(crate) async fn dispatch(
    mut commands: WriteCommands,
    writes: HashMap<(DeviceKey, String), ResolvedWrite>,
    queues: HashMap<ConnectionKey, mpsc::Sender<ConnectionWrite>>,
    shutdown: CancellationToken,
) {
    loop {
        let command = tokio::select! {
            () = shutdown.cancelled() => return,
            command = commands.rx.recv() => match command {
                Some(command) => command,
                None => return,
            },
        };
        let WriteCommand {
            action,
            device,
            reply,
        } = command;
        let Some(write) = writes.get(&(device.clone(), action.clone())) else {
            let _ = reply.send(Err(WriteError::NotOnDevice { action, device }));
            continue;
        };
        let Some(queue) = queues.get(&write.connection) else {
            let _ = reply.send(Err(WriteError::NotRunning));
            continue;
        };
        let write = ConnectionWrite {
            write: write.clone(),
            reply,
        };
        match queue.try_send(write) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(write)) => {
                let _ = write.reply.send(Err(WriteError::Busy {
                    action: write.write.name,
                }));
            }
            Err(mpsc::error::TrySendError::Closed(write)) => {
                let _ = write.reply.send(Err(WriteError::NotRunning));
            }
        }
    }
}

/// The next write for a connection; never resolves when it takes none.
pub(crate) async fn next_write(
    writes: &mut Option<mpsc::Receiver<ConnectionWrite>>,
) -> Option<ConnectionWrite> {
    match writes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
