//! Devices that announced themselves (retained `meta`), kept across restarts.

use sqlx::Row;

use super::{LocalStore, StoreError};
use crate::model::{now_ms, DeviceInfo, DeviceKey};

impl LocalStore {
    /// Records (or replaces) what a device announced.
    pub async fn save_announced_device(
        &self,
        key: &DeviceKey,
        info: &DeviceInfo,
    ) -> Result<(), StoreError> {
        // Plain strings: serializing cannot fail, but an error is still an error, not a panic.
        let json = serde_json::to_string(info)
            .map_err(|e| StoreError::Encode(format!("the meta of {key}: {e}")))?;
        sqlx::query(
            "INSERT INTO announced_devices (school, device, info, updated_ms) VALUES (?, ?, ?, ?) \
             ON CONFLICT (school, device) DO UPDATE SET info = excluded.info, \
             updated_ms = excluded.updated_ms",
        )
        .bind(&*key.school)
        .bind(&*key.device)
        .bind(json)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every announced device, oldest announcement first. A row that no longer parses is
    /// skipped with a warning (the device announces itself again on its next connect).
    pub async fn announced_devices(&self) -> Result<Vec<(DeviceKey, DeviceInfo)>, StoreError> {
        let rows = sqlx::query(
            "SELECT school, device, info FROM announced_devices ORDER BY updated_ms, school, device",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let key = DeviceKey::new(r.get(0), r.get(1));
                match serde_json::from_str::<DeviceInfo>(r.get(2)) {
                    Ok(info) => Some((key, info)),
                    Err(e) => {
                        tracing::warn!(device = %key, error = %e, "stored device meta unreadable; skipped");
                        None
                    }
                }
            })
            .collect())
    }
}
