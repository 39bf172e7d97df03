//! Supervision of the long-running tasks: a task that ends before shutdown, or panics, is
//! logged, counted (`campusguard_task_restarts_total{task}`), reported as the system fault
//! `task:<name>` (后台任务退出: a `fault` alarm on the board, and `/readyz` answers 503 while it
//! holds) and, where that is safe, started again with backoff.
//!
//! - [`Supervisor::restarting`]: for tasks whose state lives outside the task (the history
//!   writer reads a shared receiver; the others keep theirs in stores): started again after
//!   1 s, 2 s, 4 s … at most 30 s; the fault clears once a new run has lasted
//!   [`STABLE_AFTER`].
//! - [`Supervisor::once`]: for tasks that own what a restart would lose (the core owns the alarm
//!   book and its input channels): the end is reported and the fault stays until a restart of
//!   the gateway.
//!
//! Fault injection: [`Supervisor::inject_panic`] makes a running task panic (tests use it
//! through [`crate::Gateway::inject_task_panic`]; nothing outside the process can reach it).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::health::task_fault;
use crate::metrics::Metrics;

/// A restarted run that lasts this long clears its task's fault.
pub const STABLE_AFTER: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Spawns supervised tasks on the gateway's tracker. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    /// A panic trigger per task name (fault injection).
    kills: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Supervisor {
    pub fn new(tasks: &TaskTracker, metrics: &Arc<Metrics>, shutdown: &CancellationToken) -> Self {
        Self {
            tasks: tasks.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            kills: Arc::default(),
        }
    }

    /// Runs `task` once; an end before shutdown or a panic is reported (not restarted).
    pub fn once<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut task = Some(task);
        self.supervise(name.into(), false, move || task.take());
    }

    /// Runs `make()`, and again with backoff each time a run ends before shutdown or panics.
    pub fn restarting<M, F>(&self, name: impl Into<String>, mut make: M)
    where
        M: FnMut() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        self.supervise(name.into(), true, move || Some(make()));
    }

    /// Makes the running task `name` panic; false when no such task is running.
    pub fn inject_panic(&self, name: &str) -> bool {
        let kills = self.kills.lock().unwrap_or_else(PoisonError::into_inner);
        match kills.get(name) {
            Some(kill) => {
                kill.notify_one();
                true
            }
            None => false,
        }
    }

    fn supervise<M, F>(&self, name: String, restart: bool, mut make: M)
    where
        M: FnMut() -> Option<F> + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let kill = Arc::new(Notify::new());
        self.kills
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone(), kill.clone());
        let (metrics, shutdown) = (self.metrics.clone(), self.shutdown.clone());
        let fault = task_fault(name.clone());
        self.tasks.spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            let mut restarted = false;
            while let Some(task) = make() {
                let (kill, task_name) = (kill.clone(), name.clone());
                // Its own tokio task, so a panic ends this run only, and is seen here.
                let mut run = tokio::spawn(async move {
                    tokio::select! {
                        () = task => {}
                        () = kill.notified() => panic!("fault injection: task {task_name} killed"),
                    }
                });
                let outcome = if restarted {
                    tokio::select! {
                        outcome = &mut run => outcome,
                        () = tokio::time::sleep(STABLE_AFTER) => {
                            info!(task = %name, "restarted task is running again");
                            metrics.health.clear(&fault);
                            backoff = FIRST_BACKOFF;
                            run.await
                        }
                    }
                } else {
                    run.await
                };
                let why = match outcome {
                    Ok(()) if shutdown.is_cancelled() => return,
                    Ok(()) => "ended".to_string(),
                    Err(e) if e.is_panic() => format!("panicked: {}", panic_text(e.into_panic())),
                    Err(e) => format!("cancelled: {e}"),
                };
                metrics.task_ended(&name);
                metrics.health.raise(&fault, why.clone());
                if !restart || shutdown.is_cancelled() {
                    error!(task = %name, why = %why, "task stopped; not restarted");
                    return;
                }
                error!(task = %name, why = %why, restart_in = ?backoff, "task stopped; restarting");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                restarted = true;
            }
        });
    }
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_string(),
            Err(_) => "(no message)".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..100 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn restarts(metrics: &Metrics, task: &str) -> bool {
        metrics.render().contains(&format!(
            "campusguard_task_restarts_total{{task=\"{task}\"}} 1"
        ))
    }

    #[tokio::test]
    async fn a_panicked_task_is_restarted_and_a_task_that_owns_its_state_is_only_reported() {
        let (tasks, metrics) = (TaskTracker::new(), Arc::new(Metrics::new()));
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(&tasks, &metrics, &shutdown);
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counted, stop) = (runs.clone(), shutdown.clone());
        supervisor.restarting("worker", move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let stop = stop.clone();
            async move { stop.cancelled().await }
        });
        supervisor.once("owner", async {});
        let run_count = || runs.load(std::sync::atomic::Ordering::SeqCst);
        until("the first run", || run_count() == 1).await;
        assert!(supervisor.inject_panic("worker"));
        until("the restart", || run_count() == 2).await;
        assert!(restarts(&metrics, "worker"));
        assert!(metrics.health.holds(&task_fault("worker")));
        // The `once` task ended before shutdown: reported, not restarted, fault kept.
        assert!(restarts(&metrics, "owner"));
        assert!(metrics.health.holds(&task_fault("owner")));
        // A restarted run that lasts clears its fault.
        tokio::time::sleep(STABLE_AFTER + Duration::from_secs(1)).await;
        assert!(!metrics.health.holds(&task_fault("worker")));
        assert!(metrics.health.holds(&task_fault("owner")));
        // Ends at shutdown are not failures.
        shutdown.cancel();
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .expect("supervised tasks stop at shutdown");
        assert_eq!(run_count(), 2);
    }
}
