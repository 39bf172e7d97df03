//! Write-back (linkage): the gateway's handle for running the `[[modbus.actions]]` a rule names,
//! e.g. switching a cabinet's exhaust fan on when a gas or ventilation alarm rises.
//!
//! ```text
//! core ──ModbusWriter::execute_on(cab-1, "exhaust_fan_on")──► poller dispatcher ──► the device's
//!     connection task (between two polls, never concurrently with them) ──► FC5/FC6/FC16
//!     ◄── Ok(WriteReport) or Err(WriteError) (journal it; a failure is a `fault` alarm)
//! ```
//!
//! Actions are off unless configured. Create the pair with [`write_channel`], keep the
//! [`ModbusWriter`] (cheap to clone) where alarms are handled and pass the [`WriteCommands`] to
//! [`run_with_writes`](super::poller::run_with_writes). The gateway does this in `start` when
//! `[[modbus.actions]]` exist; the pipeline core (`pipeline::linkage`) runs a rule's `action`
//! on the device whose alarm was raised.

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::poller::RequestError;
use crate::model::DeviceKey;

/// Pending write commands between the gateway and the poller.
const WRITE_QUEUE: usize = 32;

/// What a successful write did, for the alarm journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    pub action: String,
    pub device: DeviceKey,
    /// e.g. `wrote coil 0 = true to unit 1 via 127.0.0.1:5020`.
    pub description: String,
}

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("no Modbus action `{0}` is configured")]
    UnknownAction(String),
    #[error("device `{device}` has no Modbus action `{action}`")]
    NotOnDevice { action: String, device: DeviceKey },
    #[error("several devices have a Modbus action `{0}`; name the device")]
    Ambiguous(String),
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

/// A request to run one named action, answered on `reply`.
#[derive(Debug)]
pub struct WriteCommand {
    pub(crate) action: String,
    /// The device whose action of that name runs; `None`: the only action of that name.
    pub(crate) device: Option<DeviceKey>,
    pub(crate) reply: oneshot::Sender<Result<WriteReport, WriteError>>,
}

/// The gateway's handle to run write-back actions.
#[derive(Debug, Clone)]
pub struct ModbusWriter {
    tx: mpsc::Sender<WriteCommand>,
}

/// The poller's end of the write channel.
#[derive(Debug)]
pub struct WriteCommands {
    pub(crate) rx: mpsc::Receiver<WriteCommand>,
}

/// A connected writer / command-receiver pair (bounded queue).
pub fn write_channel() -> (ModbusWriter, WriteCommands) {
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    (ModbusWriter { tx }, WriteCommands { rx })
}

impl ModbusWriter {
    /// Runs the only action named `action` and waits for the device's answer. It is sent between
    /// two polls of its connection, so it waits at most for the poll in progress plus the
    /// device's timeout (connect and write). A failed write should raise a `fault` alarm.
    pub async fn execute(&self, action: &str) -> Result<WriteReport, WriteError> {
        self.send(action, None).await
    }

    /// Runs `device`'s action named `action` (action names are unique per device; this is how
    /// a rule's `action` runs on the device whose alarm rose). Waits like [`Self::execute`].
    pub async fn execute_on(
        &self,
        device: &DeviceKey,
        action: &str,
    ) -> Result<WriteReport, WriteError> {
        self.send(action, Some(device.clone())).await
    }

    async fn send(
        &self,
        action: &str,
        device: Option<DeviceKey>,
    ) -> Result<WriteReport, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(WriteCommand {
                action: action.to_owned(),
                device,
                reply,
            })
            .await
            .map_err(|_| WriteError::NotRunning)?;
        answer.await.map_err(|_| WriteError::NotRunning)?
    }
}
