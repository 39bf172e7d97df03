//! Devices commissioned from the console and the audit of every change to them. The API
//! writes both in one transaction after the core has applied the change; the core reads the
//! devices at start.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{LocalStore, StoreError};
use crate::model::{now_ms, DeviceInfo, DeviceKey};

/// A commissioned device as stored: what it is and its threshold overrides (as given, JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommissionedDevice {
    pub school: String,
    pub device: String,
    pub info: DeviceInfo,
    pub overrides: Value,
}

/// One audited change.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceAudit {
    pub seq: i64,
    pub at: i64,
    pub user: String,
    pub school: String,
    pub device: String,
    pub action: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

fn encode(what: &str, value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode(format!("{what}: {e}")))
}

impl LocalStore {
    /// A commissioned device, if `key` is one.
    pub async fn commissioned_device(
        &self,
        key: &DeviceKey,
    ) -> Result<Option<CommissionedDevice>, StoreError> {
        let row = sqlx::query(
            "SELECT info, overrides FROM commissioned_devices WHERE school = ? AND device = ?",
        )
        .bind(&*key.school)
        .bind(&*key.device)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| decode(&key.school, &key.device, r.get(0), r.get(1)))
            .transpose()
    }

    /// Every commissioned device, in key order.
    pub async fn commissioned_devices(&self) -> Result<Vec<CommissionedDevice>, StoreError> {
        let rows = sqlx::query(
            "SELECT school, device, info, overrides FROM commissioned_devices ORDER BY school, device",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| decode(r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }

    /// Stores `after` (or deletes the device when `None`) and audits the change, in one
    /// transaction.
    pub async fn save_commissioned(
        &self,
        key: &DeviceKey,
        after: Option<&CommissionedDevice>,
        before: Option<&CommissionedDevice>,
        user: &str,
        action: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        match after {
            Some(device) => {
                sqlx::query(
                    "INSERT INTO commissioned_devices (school, device, info, overrides, updated_ms) \
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT (school, device) DO UPDATE SET \
                     info = excluded.info, overrides = excluded.overrides, updated_ms = excluded.updated_ms",
                )
                .bind(&*key.school)
                .bind(&*key.device)
                .bind(encode("device info", &device.info)?)
                .bind(encode("overrides", &device.overrides)?)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM commissioned_devices WHERE school = ? AND device = ?")
                    .bind(&*key.school)
                    .bind(&*key.device)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "INSERT INTO device_audit (at, user, school, device, action, before, after) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(now)
        .bind(user)
        .bind(&*key.school)
        .bind(&*key.device)
        .bind(action)
        .bind(before.map(|b| encode("before", b)).transpose()?)
        .bind(after.map(|a| encode("after", a)).transpose()?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The audit of one device, oldest first.
    pub async fn device_audit(&self, key: &DeviceKey) -> Result<Vec<DeviceAudit>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, user, school, device, action, before, after FROM device_audit \
             WHERE school = ? AND device = ? ORDER BY seq",
        )
        .bind(&*key.school)
        .bind(&*key.device)
        .fetch_all(self.pool())
        .await?;
        let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        Ok(rows
            .iter()
            .map(|r| DeviceAudit {
                seq: r.get(0),
                at: r.get(1),
                user: r.get(2),
                school: r.get(3),
                device: r.get(4),
                action: r.get(5),
                before: json(r.get(6)),
                after: json(r.get(7)),
            })
            .collect())
    }
}

fn decode(
    school: &str,
    device: &str,
    info: String,
    overrides: String,
) -> Result<CommissionedDevice, StoreError> {
    let corrupt = |e: serde_json::Error| {
        StoreError::Encode(format!("commissioned device {school}/{device}: {e}"))
    };
    Ok(CommissionedDevice {
        school: school.to_string(),
        device: device.to_string(),
        info: serde_json::from_str(&info).map_err(corrupt)?,
        overrides: serde_json::from_str(&overrides).map_err(corrupt)?,
    })
}
