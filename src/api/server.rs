//! The HTTP server loop: accepts connections and serves the router on each with hyper
//! (HTTP/1.1), under the limits that keep hostile clients from starving everyone else:
//!
//! - **a connection cap** (`http.max_connections`, lowered to leave 256 descriptors of the
//!   process's open-files limit): a permit is taken *before* `accept`, so at the cap the
//!   gateway stops accepting and new clients wait in the kernel's accept queue; the file
//!   descriptors that MQTT, SQLite, the spool and Modbus need are never used up by clients;
//! - **a header-read timeout** (`http.header_read_timeout`): a connection whose request header
//!   is not complete in time is closed — also an idle kept-alive one — so slow-header clients
//!   give their permit back;
//! - the request timeout is the router's (`guard.rs`), where the alarm stream is exempt.
//!
//! Each request carries the peer address as a [`ClientAddr`] extension (login throttling).
//! At shutdown the loop stops accepting and every connection is shut down gracefully.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::config::HttpConfig;
use crate::metrics::Metrics;

/// File descriptors of the process's limit kept for everything but HTTP clients.
pub const FD_RESERVE: u64 = 256;
/// How long a connection gets to finish its request after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The address of the client a request came from (the TCP peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The soft open-files limit of this process (Linux `/proc/self/limits`), if known.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `configured`, lowered so that clients leave [`FD_RESERVE`] descriptors of `fd_limit`.
pub fn connection_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else {
        return configured;
    };
    let room = usize::try_from(limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    configured.min(room).max(1)
}

/// Serves `router` on `listener` until `stop`, on `tasks` (each connection is a task of its
/// own, so waiting for `tasks` waits for them to close).
pub fn spawn(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    tasks: &TaskTracker,
    supervisor: &crate::supervisor::Supervisor,
) {
    let cap = connection_cap(config.max_connections, open_files_limit());
    if cap < config.max_connections {
        warn!(
            configured = config.max_connections,
            cap, "http.max_connections lowered to fit the open-files limit (raise `ulimit -n`)"
        );
    }
    info!(
        max_connections = cap,
        header_read_timeout = ?config.header_read_timeout,
        request_timeout = ?config.request_timeout,
        "HTTP limits"
    );
    metrics
        .http_max_connections
        .set(i64::try_from(cap).unwrap_or(i64::MAX));
    let header_timeout = config.header_read_timeout;
    let conns = tasks.clone();
    supervisor.once("http", async move {
        let permits = Arc::new(Semaphore::new(cap));
        loop {
            // Take a permit first: at the cap, nothing more is accepted.
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: not fatal. Wait
                    // a little so an exhausted limit is not spun on.
                    metrics.http_accept_errors.inc();
                    debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let metrics = metrics.clone();
            let stop = stop.clone();
            conns.spawn(async move {
                metrics.http_connections.inc();
                serve_connection(stream, peer, router, header_timeout, &metrics, stop).await;
                metrics.http_connections.dec();
                drop(permit);
            });
        }
    });
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ClientAddr(peer));
        let router = router.clone();
        async move {
            let response = tower::ServiceExt::oneshot(router, request.map(Body::new)).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut()).await {
                Ok(result) => result,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics.http_header_timeouts.inc();
        }
        debug!(peer = %peer, error = %e, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_the_gateway_s_own_descriptors() {
        assert_eq!(connection_cap(4096, None), 4096);
        assert_eq!(connection_cap(4096, Some(1024)), 768);
        assert_eq!(connection_cap(4096, Some(1_048_576)), 4096);
        assert_eq!(connection_cap(100, Some(10)), 1);
        assert!(open_files_limit().is_some_and(|l| l > 0));
    }
}
