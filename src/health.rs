//! The gateway's own health: conditions that stages report about themselves (the local history
//! cannot write, the alarm journal cannot write, a task ended or panicked) and that
//!
//! - the pipeline core turns into system `fault` alarms (it owns the alarm book; it reads
//!   this on every tick, see [`Health::changes_since`]), on the pseudo school `system` like a
//!   notification channel's fault (`system/<area>/<name>`, rule `<area>:<name>`);
//! - `/readyz` lists, answering 503 while any holds.
//!
//! Reporting never waits: a stage sets a condition under a short lock and goes on.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::model::{AlarmClass, ConditionChange, SensorId, Severity};
use crate::notify::fault::SYSTEM_SCHOOL;

/// The local history cannot write (disk full, I/O error): readings are still evaluated, the
/// history sheds them (counted).
pub const HISTORY: Fault = Fault {
    area: "storage",
    name: Cow::Borrowed("history"),
    what: "本地历史写入失败",
};
/// The alarm journal cannot write: alarms are still shown, broadcast and actionable.
pub const JOURNAL: Fault = Fault {
    area: "storage",
    name: Cow::Borrowed("journal"),
    what: "报警日志写入失败",
};

/// The areas whose rule ids are the gateway's own faults (`<area>:<name>`).
const AREAS: [&str; 2] = ["storage", "task"];

/// One kind of system fault: its pseudo device (`area`), point (`name`) and its zh-CN title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub area: &'static str,
    pub name: Cow<'static, str>,
    pub what: &'static str,
}

/// A long-running task's fault (`task:<name>`, 后台任务退出).
pub fn task_fault(task: impl Into<Cow<'static, str>>) -> Fault {
    Fault {
        area: "task",
        name: task.into(),
        what: "后台任务退出",
    }
}

impl Fault {
    /// Its rule id, e.g. `storage:history`.
    pub fn rule(&self) -> String {
        format!("{}:{}", self.area, self.name)
    }

    /// The condition change that raises (`Some(why)`) or clears (`None`) this fault.
    pub fn change(&self, failure: Option<&str>, now_ms: i64) -> ConditionChange {
        let message = match failure {
            Some(why) => format!("{}：{why}", self.what),
            None => format!("{}：已恢复", self.what),
        };
        ConditionChange {
            sensor: SensorId::new(SYSTEM_SCHOOL, self.area, &self.name),
            rule: self.rule().into(),
            class: AlarmClass::Fault,
            severity: failure.map(|_| Severity::Alarm),
            value: None,
            threshold: None,
            reading_ts_ms: now_ms,
            message,
        }
    }
}

/// Whether `rule` is one of the gateway's own faults (the core restores and clears these
/// itself, not the rules engine).
pub fn is_fault(rule: &str) -> bool {
    rule.split_once(':')
        .is_some_and(|(area, name)| AREAS.contains(&area) && !name.is_empty())
}

/// The conditions, shared by every stage (cheap to clone behind an `Arc`).
#[derive(Debug, Default)]
pub struct Health {
    /// Bumped on every change, so the core looks only when something changed.
    generation: AtomicU64,
    /// By rule id: the fault and why it holds (`None` once it cleared).
    conditions: Mutex<BTreeMap<String, (Fault, Option<String>)>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports that `fault` holds for `why` (again: only the reason is updated).
    pub fn raise(&self, fault: &Fault, why: impl Into<String>) {
        self.set(fault, Some(why.into()));
    }

    /// Reports that `fault` no longer holds (a no-op when it did not).
    pub fn clear(&self, fault: &Fault) {
        let rule = fault.rule();
        let holds = self.lock().get(&rule).is_some_and(|(_, why)| why.is_some());
        if holds {
            self.set(fault, None);
        }
    }

    fn set(&self, fault: &Fault, why: Option<String>) {
        let mut conditions = self.lock();
        let entry = conditions
            .entry(fault.rule())
            .or_insert((fault.clone(), None));
        // A changed reason alone does not bump: the alarm is raised once per episode.
        let changed = entry.1.is_some() != why.is_some();
        entry.1 = why;
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether `fault` holds now.
    pub fn holds(&self, fault: &Fault) -> bool {
        self.lock()
            .get(&fault.rule())
            .is_some_and(|(_, why)| why.is_some())
    }

    /// The faults that hold now, as `(rule, why)`, for `/readyz`.
    pub fn failing(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter_map(|(rule, (_, why))| why.clone().map(|why| (rule.clone(), why)))
            .collect()
    }

    /// When anything changed since `seen` (a generation this returned before, or `u64::MAX`
    /// for "never looked"): the new generation and every condition ever reported, as condition
    /// changes (the alarm book ignores the ones that change nothing).
    pub fn changes_since(&self, seen: u64, now_ms: i64) -> Option<(u64, Vec<ConditionChange>)> {
        let generation = self.generation.load(Ordering::Acquire);
        if generation == seen {
            return None;
        }
        let changes = self
            .lock()
            .values()
            .map(|(fault, why)| fault.change(why.as_deref(), now_ms))
            .collect();
        Some((generation, changes))
    }

    /// Whether a system fault alarm with `rule` has a condition that holds (an open fault alarm
    /// restored from before a restart whose condition is not reported again is cleared).
    pub fn holds_rule(&self, rule: &str) -> bool {
        self.lock().get(rule).is_some_and(|(_, why)| why.is_some())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Fault, Option<String>)>> {
        self.conditions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::{AlarmBook, Transition};

    #[test]
    fn a_history_failure_raises_one_fault_and_its_recovery_clears_it() {
        let health = Health::new();
        let mut book = AlarmBook::default();
        assert!(health.changes_since(0, 1).is_none());
        health.raise(&HISTORY, "database or disk is full");
        health.raise(&HISTORY, "still full");
        let (seen, changes) = health.changes_since(0, 10).expect("changed");
        assert_eq!(changes.len(), 1);
        let raised = book.apply(&changes[0], 10, false).expect("raised");
        assert_eq!(raised.transition, Transition::Raised);
        assert_eq!(&*raised.alarm.rule, "storage:history");
        assert_eq!(raised.alarm.sensor.to_string(), "system/storage/history");
        assert_eq!(raised.alarm.class, AlarmClass::Fault);
        assert!(raised.alarm.message.starts_with("本地历史写入失败"));
        assert_eq!(
            health.failing(),
            vec![("storage:history".into(), "still full".into())]
        );
        assert!(health.changes_since(seen, 11).is_none());
        health.clear(&HISTORY);
        let (_, changes) = health.changes_since(seen, 12).expect("changed");
        let cleared = book.apply(&changes[0], 12, false).expect("cleared");
        assert_eq!(cleared.transition, Transition::Cleared);
        assert!(health.failing().is_empty());
        assert!(is_fault("storage:history") && is_fault("task:history-writer"));
        assert!(!is_fault("heat_fixed") && !is_fault("notify:duty") && !is_fault("task:"));
    }
}
