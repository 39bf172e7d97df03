//! Running under systemd (`Type=notify`, `WatchdogSec=`): readiness and the watchdog.
//!
//! The sd_notify protocol is one unix datagram per message (`READY=1`, `WATCHDOG=1`, …) to the
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). That is a
//! few lines of std, so it is written here rather than pulled in as a dependency; without
//! `$NOTIFY_SOCKET` (not under systemd) every call does nothing.
//!
//! - `READY=1` goes once the stores and HTTP are up (`crate::start` returned) and MQTT is
//!   connected — or after [`READY_MQTT_WAIT`] without MQTT, so a broker that is down at boot
//!   does not make systemd kill (and `dpkg` wait on) a gateway whose console and Modbus work;
//!   `/readyz` keeps saying MQTT is down.
//! - `WATCHDOG=1` is fed from the pipeline core's own heartbeat
//!   ([`Metrics::core_heartbeat`](crate::metrics::Metrics), beaten on every turn of the core
//!   loop, at least once per `rules.tick`), not from a timer of its own: a core that stops
//!   turning (a deadlock, a blocking call) stops the feed, and systemd restarts the service
//!   after `WatchdogSec=`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::{Heartbeat, Metrics};

/// How long readiness waits for MQTT before it says READY anyway.
pub const READY_MQTT_WAIT: Duration = Duration::from_secs(30);

/// Where sd_notify messages go: the socket of `$NOTIFY_SOCKET`.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: String,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; `None` when not started by systemd with `Type=notify`.
    pub fn from_env() -> Option<Self> {
        let socket = std::env::var("NOTIFY_SOCKET").ok()?;
        (!socket.is_empty()).then_some(Self { socket })
    }

    /// To a socket path (or `@abstract` name).
    pub fn to_socket(socket: impl Into<String>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// Sends one message (`KEY=VALUE` lines). Never blocks: a datagram socket either takes
    /// the message or fails, and a failure is returned for the caller to log.
    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        use std::os::unix::net::UnixDatagram;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        if let Some(name) = self.socket.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            socket.send_to(state.as_bytes(), PathBuf::from(&self.socket))?;
        }
        Ok(())
    }

    fn notify_or_log(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            warn!(error = %e, socket = %self.socket, "sd_notify failed");
        }
    }
}

/// The watchdog interval systemd asked for (`$WATCHDOG_USEC`, for this process when
/// `$WATCHDOG_PID` is set); `None` when there is no watchdog.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Whether the core still turns: its last beat is younger than `stall_limit`.
pub fn core_alive(heartbeat: &Heartbeat, stall_limit: Duration) -> bool {
    heartbeat.age() < stall_limit
}

/// Feeds the watchdog every `interval / 4` while the core's heartbeat is younger than
/// `interval / 2`; a stalled core stops the feed (logged once), and systemd, which waits
/// `interval` between feeds, restarts the service. Ends on `shutdown`.
pub async fn feed_watchdog(
    notifier: Notifier,
    heartbeat: Heartbeat,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let stall_limit = interval / 2;
    let mut ticks = tokio::time::interval(interval / 4);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if core_alive(&heartbeat, stall_limit) {
            if stalled {
                info!("pipeline core turns again; feeding the watchdog");
                stalled = false;
            }
            notifier.notify_or_log("WATCHDOG=1");
        } else if !stalled {
            stalled = true;
            warn!(
                age_ms = heartbeat.age().as_millis() as u64,
                "pipeline core has not turned; no longer feeding the systemd watchdog"
            );
        }
    }
}

/// Under systemd: READY=1 once MQTT is connected (or after [`READY_MQTT_WAIT`]), the watchdog
/// fed from the core's heartbeat, STOPPING=1 on shutdown. Nothing when not under systemd.
pub fn supervise(metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let Some(notifier) = Notifier::from_env() else {
        return;
    };
    if let Some(interval) = watchdog_interval_from_env() {
        info!(
            ?interval,
            "feeding the systemd watchdog from the core heartbeat"
        );
        let heartbeat = metrics.core_heartbeat.clone();
        tokio::spawn(feed_watchdog(
            notifier.clone(),
            heartbeat,
            interval,
            shutdown.clone(),
        ));
    }
    tokio::spawn(async move {
        let waited = tokio::time::Instant::now();
        let mut said_waiting = false;
        while metrics.mqtt_connected.get() != 1 && waited.elapsed() < READY_MQTT_WAIT {
            if !said_waiting {
                notifier.notify_or_log("STATUS=waiting for the MQTT broker");
                said_waiting = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if !shutdown.is_cancelled() {
            let status = if metrics.mqtt_connected.get() == 1 {
                "STATUS=running"
            } else {
                "STATUS=running; MQTT not connected (see /readyz)"
            };
            notifier.notify_or_log(&format!("READY=1\n{status}"));
        }
        shutdown.cancelled().await;
        notifier.notify_or_log("STOPPING=1");
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_beating_core_is_alive_and_a_stalled_one_is_not() {
        let heartbeat = Heartbeat::new();
        heartbeat.beat();
        assert!(core_alive(&heartbeat, Duration::from_millis(200)));
        // Fault injection: the core stops turning (nothing beats).
        std::thread::sleep(Duration::from_millis(250));
        assert!(!core_alive(&heartbeat, Duration::from_millis(200)));
        heartbeat.beat();
        assert!(core_alive(&heartbeat, Duration::from_millis(200)));
    }

    /// Over a real unix datagram socket: WATCHDOG=1 keeps coming while a task beats the
    /// heartbeat, stops when it stalls, and comes back when it turns again.
    #[tokio::test]
    async fn the_watchdog_is_fed_only_while_the_core_beats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        let heartbeat = Heartbeat::new();
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let core = {
            let (heartbeat, stalled) = (heartbeat.clone(), stalled.clone());
            tokio::spawn(async move {
                loop {
                    if !stalled.load(std::sync::atomic::Ordering::Relaxed) {
                        heartbeat.beat();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let shutdown = CancellationToken::new();
        let interval = Duration::from_millis(400);
        let feeder = tokio::spawn(feed_watchdog(
            Notifier::to_socket(path.to_string_lossy()),
            heartbeat,
            interval,
            shutdown.clone(),
        ));
        let count = |socket: &UnixDatagram| {
            let mut buf = [0u8; 64];
            let mut n = 0;
            while let Ok(len) = socket.recv(&mut buf) {
                assert_eq!(&buf[..len], b"WATCHDOG=1");
                n += 1;
            }
            n
        };
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(count(&socket) >= 3, "fed while the core beats");
        stalled.store(true, std::sync::atomic::Ordering::Relaxed);
        // Within interval/2 of the last beat the feed stops.
        tokio::time::sleep(Duration::from_millis(300)).await;
        count(&socket);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(count(&socket), 0, "no feed while the core is stalled");
        stalled.store(false, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(count(&socket) >= 1, "fed again once the core turns");
        shutdown.cancel();
        feeder.await.unwrap();
        core.abort();
    }

    #[test]
    fn ready_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("campusguard-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::to_socket(format!("@{name}"))
            .notify("READY=1")
            .unwrap();
        let mut buf = [0u8; 16];
        let len = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }
}
