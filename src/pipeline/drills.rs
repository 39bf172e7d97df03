//! The core's side of drill mode: starting and ending drills (stored before they are
//! broadcast, like alarm transitions), expiring them on the tick, and telling the alarm book
//! whether a sensor is under a drill when its alarm is raised.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

use super::registry::Registry;
use super::Core;
use crate::drills::{Drill, DrillBook, DrillChange, DrillError, DrillEvent, NewDrill};
use crate::model::{now_ms, SensorId};

/// Whether a drill covers the sensor's device (its school, or its school and building). A free
/// function so the core can call it while it drains its condition changes.
pub(super) fn under_drill(drills: &DrillBook, registry: &Registry, sensor: &SensorId) -> bool {
    if drills.is_empty() {
        return false;
    }
    let building = registry.building(&sensor.device_key());
    drills.covering(&sensor.school, building).is_some()
}

impl Core {
    pub(super) async fn start_drill(
        &mut self,
        new: NewDrill,
        reply: oneshot::Sender<Result<Drill, DrillError>>,
    ) {
        let now = now_ms();
        let result = match self.drills.check(&new, now) {
            Ok(()) => self
                .store
                .insert_drill(&new, now)
                .await
                .map_err(|e| DrillError::Store(e.to_string())),
            Err(e) => Err(e),
        };
        if let Ok(drill) = &result {
            info!(id = drill.id, school = %drill.school, building = ?drill.building, by = %drill.started_by, until = drill.until, "drill started");
            self.drills.insert(drill.clone(), now, Instant::now());
            self.broadcast_drill(DrillEvent {
                change: DrillChange::Started,
                drill: drill.clone(),
            });
        }
        let _ = reply.send(result);
    }

    pub(super) async fn end_drill(
        &mut self,
        id: u64,
        user: &str,
        reply: oneshot::Sender<Result<Drill, DrillError>>,
    ) {
        let result = match self.drills.end(id, user, now_ms()) {
            Ok(event) => {
                self.store_drill_end(&event.drill).await;
                let drill = event.drill.clone();
                info!(id, by = %user, "drill ended");
                self.broadcast_drill(event);
                Ok(drill)
            }
            Err(e) => Err(e),
        };
        let _ = reply.send(result);
    }

    /// Ends drills whose expiry has passed (called on every tick).
    pub(super) async fn expire_drills(&mut self) {
        for event in self.drills.expire(now_ms(), Instant::now()) {
            info!(id = event.drill.id, school = %event.drill.school, "drill expired");
            self.store_drill_end(&event.drill).await;
            self.broadcast_drill(event);
        }
    }

    /// A failed write is logged: the drill has ended in memory either way (ending is the safe
    /// side), and an unexpired-looking row is ended again at the next start by its `until`.
    async fn store_drill_end(&self, drill: &Drill) {
        if let Err(e) = self.store.end_drill(drill).await {
            warn!(id = drill.id, error = %e, "storing the end of a drill failed");
        }
    }

    fn broadcast_drill(&self, event: DrillEvent) {
        // No receivers is fine (nobody watching).
        let _ = self.out.drill_stream.send(Arc::new(event));
    }
}
