//! One Modbus connection (a TCP address or a serial port) and one request on it: connect on
//! demand, send a read or a write with its timeout, count it, and drop the connection after a
//! timeout or a transport error.
//!
//! Every connect and request is wrapped in `tokio::time::timeout` (tokio-modbus has no timeout
//! of its own, tokio-modbus #113), and after a timeout the connection is dropped and reopened,
//! because a reused context can hand a late answer to the next request (#324). The connection
//! task ([`super::connection`]) owns one `Link` and uses it for its polls and its action writes,
//! never for two requests at once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;
use tokio_modbus::client::{Client as _, Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;
use tracing::debug;

use super::codec::Table;
use super::config::{ConnectionKey, Parity, Transport};
use super::error::RequestError;
use super::registers::{BlockData, ReadBlock};
use super::stats::ModbusStats;

/// Serial line settings: baud, parity, data bits, stop bits.
pub(crate) type LineSettings = (u32, Parity, u8, u8);

/// One write request (an action's): FC5, FC6 or FC16.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteOp {
    Coil(u16, bool),
    Register(u16, u16),
    Registers(u16, Vec<u16>),
}

impl std::fmt::Display for WriteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteOp::Coil(address, on) => write!(f, "writing coil {address} = {on}"),
            WriteOp::Register(address, word) => {
                write!(f, "writing holding {address} = {word:#06x}")
            }
            WriteOp::Registers(address, words) => {
                write!(
                    f,
                    "writing holding {address}+{} = {words:04x?}",
                    words.len()
                )
            }
        }
    }
}

/// A connection, open or not yet (re)opened.
pub(crate) struct Link {
    key: ConnectionKey,
    transport: Transport,
    /// The same for every device on the line (checked by validate).
    line: LineSettings,
    context: Option<Context>,
    connected_once: bool,
    stats: Arc<ModbusStats>,
}

impl Link {
    pub(crate) fn new(
        key: ConnectionKey,
        transport: Transport,
        line: LineSettings,
        stats: Arc<ModbusStats>,
    ) -> Self {
        Self {
            key,
            transport,
            line,
            context: None,
            connected_once: false,
            stats,
        }
    }

    pub(crate) fn key(&self) -> &ConnectionKey {
        &self.key
    }

    /// Reads `block` from `unit`, within `budget` (connecting first if needed).
    pub(crate) async fn read(
        &mut self,
        unit: u8,
        block: &ReadBlock,
        budget: Duration,
    ) -> Result<BlockData, RequestError> {
        let context = self.connect(budget).await?;
        context.set_slave(Slave(unit));
        let answered = timeout(budget, read_block(context, block)).await;
        let request = format!(
            "reading {} {}+{} of unit {unit}",
            block.table.as_str(),
            block.start,
            block.count
        );
        self.answer(request, budget, answered)
    }

    /// Writes `op` to `unit`, within `budget` (connecting first if needed). Returns what was
    /// written, e.g. `writing coil 0 = true of unit 1 via 127.0.0.1:5020`.
    pub(crate) async fn write(
        &mut self,
        unit: u8,
        op: &WriteOp,
        budget: Duration,
    ) -> Result<String, RequestError> {
        let request = format!("{op} of unit {unit}");
        let context = self.connect(budget).await?;
        context.set_slave(Slave(unit));
        let answered = match op {
            WriteOp::Coil(address, on) => {
                timeout(budget, context.write_single_coil(*address, *on)).await
            }
            WriteOp::Register(address, word) => {
                timeout(budget, context.write_single_register(*address, *word)).await
            }
            WriteOp::Registers(address, words) => {
                timeout(budget, context.write_multiple_registers(*address, words)).await
            }
        };
        self.answer(request.clone(), budget, answered)?;
        Ok(format!("{request} via {}", self.key))
    }

    /// Counts one request and turns its answer (or its absence) into a result.
    fn answer<T>(
        &mut self,
        request: String,
        budget: Duration,
        answered: Result<tokio_modbus::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, RequestError> {
        let stats = &self.stats;
        ModbusStats::add(&stats.requests, 1);
        match answered {
            Err(_elapsed) => {
                ModbusStats::add(&stats.timeouts, 1);
                // A late answer would otherwise be read as the answer to the next request.
                self.context = None;
                Err(RequestError::Timeout {
                    request,
                    timeout: budget,
                })
            }
            Ok(Err(source)) => {
                ModbusStats::add(&stats.transport_errors, 1);
                self.context = None;
                Err(RequestError::Transport { request, source })
            }
            Ok(Ok(Err(code))) => {
                ModbusStats::add(&stats.exceptions, 1);
                Err(RequestError::Exception {
                    request,
                    code: u8::from(code),
                })
            }
            Ok(Ok(Ok(value))) => {
                ModbusStats::add(&stats.responses, 1);
                Ok(value)
            }
        }
    }

    /// The open context, connecting first if there is none.
    async fn connect(&mut self, connect_timeout: Duration) -> Result<&mut Context, RequestError> {
        if self.context.is_none() {
            let opened = timeout(
                connect_timeout,
                open(self.key.clone(), self.transport, self.line),
            )
            .await;
            let context = match opened {
                Err(_elapsed) => {
                    ModbusStats::add(&self.stats.timeouts, 1);
                    ModbusStats::add(&self.stats.connect_errors, 1);
                    return Err(RequestError::ConnectTimeout {
                        connection: self.key.clone(),
                        timeout: connect_timeout,
                    });
                }
                Ok(Err(error)) => {
                    ModbusStats::add(&self.stats.connect_errors, 1);
                    return Err(error);
                }
                Ok(Ok(context)) => context,
            };
            if self.connected_once {
                ModbusStats::add(&self.stats.reconnects, 1);
            }
            self.connected_once = true;
            debug!(connection = %self.key, transport = self.transport.as_str(), "Modbus connection opened");
            self.context = Some(context);
        }
        match self.context.as_mut() {
            Some(context) => Ok(context),
            // Just set above; kept as an error rather than a panic.
            None => Err(RequestError::Connect {
                connection: self.key.clone(),
                source: io::Error::other("connection vanished"),
            }),
        }
    }

    /// Closes the connection politely (bounded: a dead peer does not hold up shutdown).
    pub(crate) async fn close(&mut self) {
        if let Some(mut context) = self.context.take() {
            let _ = timeout(Duration::from_millis(200), context.disconnect()).await;
        }
    }
}

/// Opens a new client context for the connection.
async fn open(
    key: ConnectionKey,
    transport: Transport,
    line: LineSettings,
) -> Result<Context, RequestError> {
    let connect_error = |source: io::Error| RequestError::Connect {
        connection: key.clone(),
        source,
    };
    match (&key, transport) {
        (ConnectionKey::Network(address), transport) => {
            let socket_address = tokio::net::lookup_host(address.as_str())
                .await
                .map_err(|source| RequestError::Resolve {
                    address: address.clone(),
                    source,
                })?
                .next()
                .ok_or_else(|| RequestError::Resolve {
                    address: address.clone(),
                    source: io::Error::new(io::ErrorKind::NotFound, "no address"),
                })?;
            let stream = tokio::net::TcpStream::connect(socket_address)
                .await
                .map_err(connect_error)?;
            // Requests are small and latency matters more than packet count.
            stream.set_nodelay(true).map_err(connect_error)?;
            Ok(if transport == Transport::RtuOverTcp {
                tokio_modbus::client::rtu::attach(stream)
            } else {
                tokio_modbus::client::tcp::attach(stream)
            })
        }
        (ConnectionKey::Serial(path), _) => {
            let (baud, parity, data_bits, stop_bits) = line;
            let builder = tokio_serial::new(path.as_str(), baud)
                .parity(match parity {
                    Parity::N => tokio_serial::Parity::None,
                    Parity::E => tokio_serial::Parity::Even,
                    Parity::O => tokio_serial::Parity::Odd,
                })
                .data_bits(match data_bits {
                    5 => tokio_serial::DataBits::Five,
                    6 => tokio_serial::DataBits::Six,
                    7 => tokio_serial::DataBits::Seven,
                    _ => tokio_serial::DataBits::Eight,
                })
                .stop_bits(if stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                });
            let port = tokio_serial::SerialStream::open(&builder)
                .map_err(|e| connect_error(io::Error::other(e)))?;
            Ok(tokio_modbus::client::rtu::attach(port))
        }
    }
}

async fn read_block(context: &mut Context, block: &ReadBlock) -> tokio_modbus::Result<BlockData> {
    let (start, count) = (block.start, block.count);
    Ok(match block.table {
        Table::Coil => context.read_coils(start, count).await?.map(BlockData::Bits),
        Table::Discrete => context
            .read_discrete_inputs(start, count)
            .await?
            .map(BlockData::Bits),
        Table::Holding => context
            .read_holding_registers(start, count)
            .await?
            .map(BlockData::Words),
        Table::Input => context
            .read_input_registers(start, count)
            .await?
            .map(BlockData::Words),
    })
}
