//! Why one Modbus request failed, and which failures are worth another attempt: decided here,
//! in one place, for the polls ([`super::connection`]) and the action writes ([`super::write`]).

use std::io;
use std::time::Duration;

use thiserror::Error;
use tokio_modbus::ExceptionCode;

use super::config::ConnectionKey;

/// Why one request (a connect, a read of a poll, or an action's write) failed, or why a poll
/// produced nothing.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("cannot resolve `{address}`: {source}")]
    Resolve { address: String, source: io::Error },
    #[error("cannot connect to `{connection}`: {source}")]
    Connect {
        connection: ConnectionKey,
        source: io::Error,
    },
    #[error("connecting to `{connection}` took longer than {timeout:?}")]
    ConnectTimeout {
        connection: ConnectionKey,
        timeout: Duration,
    },
    #[error("no answer to {request} within {timeout:?}")]
    Timeout { request: String, timeout: Duration },
    #[error("exception {code} ({}) answering {request}", exception_name(*.code))]
    Exception { request: String, code: u8 },
    #[error("transport error on {request}: {source}")]
    Transport {
        request: String,
        source: tokio_modbus::Error,
    },
    #[error("no point of the device could be decoded")]
    NothingDecoded,
}

/// The standard name of a Modbus exception code.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "non-standard exception",
    }
}

impl RequestError {
    /// Worth another attempt within the same cycle: a busy device, a dropped connection. A
    /// timeout is not: it already cost the whole budget.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            RequestError::Exception { code, .. } => {
                matches!(
                    ExceptionCode::new(*code),
                    ExceptionCode::ServerDeviceBusy | ExceptionCode::Acknowledge
                )
            }
            RequestError::Transport { .. } | RequestError::Connect { .. } => true,
            _ => false,
        }
    }

    /// After this error the rest of the device's cycle is skipped (it would only wait again).
    pub(crate) fn ends_cycle(&self) -> bool {
        matches!(
            self,
            RequestError::Timeout { .. }
                | RequestError::ConnectTimeout { .. }
                | RequestError::Connect { .. }
                | RequestError::Resolve { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_names_follow_the_modbus_specification() {
        assert_eq!(exception_name(2), "illegal data address");
        assert_eq!(exception_name(6), "server device busy");
        assert_eq!(exception_name(0x42), "non-standard exception");
        let busy = RequestError::Exception {
            request: "reading holding 0+2 of unit 1".into(),
            code: 6,
        };
        assert!(busy.is_transient());
        assert!(!busy.ends_cycle());
        let timeout = RequestError::Timeout {
            request: "reading holding 0+2 of unit 1".into(),
            timeout: Duration::from_millis(5),
        };
        assert!(!timeout.is_transient());
        assert!(timeout.ends_cycle());
    }
}
