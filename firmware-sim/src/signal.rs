//! SIGINT or SIGTERM as one future: how both binaries of the workspace (`campusguard-sim`
//! and the gateway's `campusguard`, which links this crate for its demo) learn to stop.

use tracing::warn;

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM. When SIGTERM cannot be watched it says
/// so and waits for Ctrl-C alone.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                warn!(error = %e, "Cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
