//! The ticket record and its enumerations (state, category, grade, source), with the Chinese and
//! English labels the ledger uses. Shared by the store, the workflow, the API and the export.

use serde::{Deserialize, Serialize};

macro_rules! labelled_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal, $zh:literal, $en:literal;)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($code => Some($name::$variant),)* _ => None }
            }
            pub fn label(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $(($name::$variant, Lang::Zh) => $zh, ($name::$variant, Lang::En) => $en,)*
                }
            }
        }
    };
}

/// Language of labels and headers in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zh" | "zh-CN" | "cn" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

labelled_enum!(
    /// Workflow state (`docs/design.md`, "Hazard tickets").
    State {
        Registered = "registered", "已登记", "registered";
        Rectifying = "rectifying", "整改中", "rectifying";
        Deferred = "deferred", "管控中", "deferred";
        Reported = "reported", "待验收", "reported";
        Closed = "closed", "已销号", "closed";
    }
);

labelled_enum!(
    Category {
        Fire = "fire", "消防安全", "fire";
        Security = "security", "治安安全", "security";
        LabChemical = "lab_chemical", "实验室危化品", "lab / chemicals";
        FoodWater = "food_water", "食品饮水", "food / water";
        Building = "building", "校舍建筑", "building";
        Traffic = "traffic", "交通安全", "traffic";
        Other = "other", "其他", "other";
    }
);

labelled_enum!(
    Grade {
        General = "general", "一般", "general";
        Major = "major", "重大", "major";
    }
);

labelled_enum!(
    SourceKind {
        Sensor = "sensor", "传感器", "sensor";
        Inspection = "inspection", "排查", "inspection";
    }
);

/// One hazard ticket. `id` is its number `<SCHOOLCODE>-<YYYYMM>-<NNNN>`. Times are Unix ms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub school: String,
    pub state: State,
    /// Optimistic concurrency: every change bumps it; a change against an old one is refused.
    pub version: i64,
    pub category: Category,
    pub grade: Grade,
    pub source: SourceKind,
    pub inspector: Option<String>,
    /// Sensor tickets: `school/device/point` and the rule id.
    pub sensor: Option<String>,
    pub rule: Option<String>,
    pub alarm_class: Option<String>,
    /// Where the hazard is, as people name it ("实验楼 301").
    pub location: String,
    /// The place, when known: building and room.
    #[serde(default)]
    pub building: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    /// Sensor tickets: the device and point (`cab-2/lel_pct`), apart from the place.
    #[serde(default)]
    pub device: Option<String>,
    pub description: String,
    pub responsible_unit: Option<String>,
    pub responsible_person: Option<String>,
    pub measures: Option<String>,
    /// 资金: the money for the rectification and where it comes from.
    #[serde(default)]
    pub funding: Option<String>,
    pub deadline_at: Option<i64>,
    /// 预案: what is done if the hazard strikes before it is fixed.
    #[serde(default)]
    pub contingency_plan: Option<String>,
    pub deferral_plan: Option<String>,
    pub interim_measures: Option<String>,
    pub rectification: Option<String>,
    pub rectified_at: Option<i64>,
    pub reported_by: Option<String>,
    pub reported_at: Option<i64>,
    pub verifier: Option<String>,
    pub closed_at: Option<i64>,
    pub reject_reason: Option<String>,
    pub supervised: bool,
    pub supervised_at: Option<i64>,
    pub supervised_by: Option<String>,
    /// The closed ticket of the same sensor and rule that this one recurs.
    pub previous_ticket: Option<String>,
    pub occurrences: i64,
    pub last_occurrence_at: Option<i64>,
    pub found_at: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Ticket {
    /// Overdue: still to be rectified and past its deadline.
    pub fn is_overdue(&self, now: i64) -> bool {
        matches!(
            self.state,
            State::Registered | State::Rectifying | State::Deferred
        ) && self.deadline_at.is_some_and(|d| d < now)
    }
}

/// One alarm occurrence appended to a sensor ticket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Occurrence {
    pub alarm_id: i64,
    pub at: i64,
    pub reading_ts: i64,
    pub message: String,
}

/// One audit record: who did what, when, and the fields it changed (`{field: [before, after]}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub changes: serde_json::Value,
    pub comment: Option<String>,
}

/// Evidence (整改前后照片): stored under its content hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub sha256: String,
    pub kind: AttachmentKind,
    pub content_type: String,
    pub size: i64,
    pub uploaded_by: String,
    pub uploaded_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    Before,
    After,
    Other,
}

impl AttachmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Before => "before",
            AttachmentKind::After => "after",
            AttachmentKind::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "before" => Some(AttachmentKind::Before),
            "after" => Some(AttachmentKind::After),
            "other" => Some(AttachmentKind::Other),
            _ => None,
        }
    }
}
