//! Schools as data (`[[schools]]`): the one list of the district's schools — id (as devices and
//! tokens name it), name (as people read it), numbering code (`<CODE>-<YYYYMM>-<NNNN>`) and
//! kind (which decides the drill target). Everything that shows, numbers or counts schools
//! (ticket numbers, the reporting calendar, the district page, drill compliance) reads it
//! from here, so a school is added in one place.

use serde::{Deserialize, Serialize};

use crate::model::valid_name;

/// The kind of a school: it sets the drill target (中小学每月 1 次、每学年 8+n 次; 幼儿园每两月
/// 1 次、每学年 4+n 次).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SchoolKind {
    Primary,
    Middle,
    High,
    /// 九年一贯制 / 完全中学.
    NineYear,
    Vocational,
    Special,
    Kindergarten,
    #[default]
    Other,
}

impl SchoolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SchoolKind::Primary => "primary",
            SchoolKind::Middle => "middle",
            SchoolKind::High => "high",
            SchoolKind::NineYear => "nine_year",
            SchoolKind::Vocational => "vocational",
            SchoolKind::Special => "special",
            SchoolKind::Kindergarten => "kindergarten",
            SchoolKind::Other => "other",
        }
    }

    /// Months between two required drills: kindergartens every two months, schools monthly.
    pub fn drill_interval_months(self) -> u32 {
        match self {
            SchoolKind::Kindergarten => 2,
            _ => 1,
        }
    }

    /// The minimum drills in a school year (the "8" of 8+n, the "4" of 4+n).
    pub fn drills_per_school_year(self) -> u32 {
        match self {
            SchoolKind::Kindergarten => 4,
            _ => 8,
        }
    }
}

/// One `[[schools]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct School {
    /// As devices, topics and tokens name it (`xhsy`).
    pub id: String,
    /// As people read it (`新华实验小学`).
    pub name: String,
    /// Ticket numbering code (ASCII letters and digits). Default: the upper-cased id.
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub kind: SchoolKind,
}

/// The district's schools, in configured order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schools {
    list: Vec<School>,
}

impl Schools {
    pub fn new(list: Vec<School>) -> Self {
        Self { list }
    }

    pub fn all(&self) -> &[School] {
        &self.list
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&School> {
        self.list.iter().find(|s| s.id == id)
    }

    /// The name people read; the id when the school is not listed.
    pub fn name_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.get(id).map(|s| s.name.as_str()).unwrap_or(id)
    }

    /// The numbering code given in `[[schools]]`, if any.
    pub fn code_of(&self, id: &str) -> Option<&str> {
        self.get(id).and_then(|s| s.code.as_deref())
    }

    pub fn kind_of(&self, id: &str) -> SchoolKind {
        self.get(id).map(|s| s.kind).unwrap_or_default()
    }

    /// Every problem of the list: bad or duplicate ids and codes, empty names.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut ids = std::collections::HashSet::new();
        let mut codes = std::collections::HashSet::new();
        for s in &self.list {
            if !valid_name(&s.id) {
                problems.push(format!(
                    "schools: id `{}` must be 1-64 characters of `A-Z a-z 0-9 _ -`",
                    s.id
                ));
            }
            // `/api/v1/reports/district/{month}` is the district file, not a school's month.
            if s.id == "district" {
                problems.push("schools: `district` is reserved; choose another id".into());
            }
            if !ids.insert(s.id.as_str()) {
                problems.push(format!("schools: `{}` is listed twice", s.id));
            }
            if s.name.trim().is_empty() || s.name.chars().count() > 100 {
                problems.push(format!(
                    "schools.{}: name must be 1 to 100 characters",
                    s.id
                ));
            }
            let code = s.code.clone().unwrap_or_else(|| s.id.to_uppercase());
            if let Some(given) = &s.code {
                if given.is_empty()
                    || given.len() > 16
                    || !given.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    problems.push(format!(
                        "schools.{}: code `{given}`: use 1 to 16 ASCII letters and digits",
                        s.id
                    ));
                }
            }
            // Two schools with one code would share one number sequence.
            if !codes.insert(code.clone()) {
                problems.push(format!(
                    "schools.{}: code `{code}` is used by another school",
                    s.id
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn school(id: &str, code: Option<&str>) -> School {
        School {
            id: id.into(),
            name: format!("{id} 学校"),
            code: code.map(str::to_string),
            kind: SchoolKind::Primary,
        }
    }

    #[test]
    fn duplicate_ids_and_codes_and_bad_codes_are_reported() {
        let schools = Schools::new(vec![
            school("xhsy", None),
            school("xhsy", Some("X1")),
            school("dfzx", Some("XHSY")),
            school("yey", Some("幼儿园")),
        ]);
        let problems = schools.validate();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("listed twice"));
        assert!(problems[1].contains("code `XHSY`"));
        assert!(problems[2].contains("ASCII"));
        assert!(
            Schools::new(vec![school("a", None), school("b", Some("BB"))])
                .validate()
                .is_empty()
        );
    }

    #[test]
    fn kinds_parse_and_set_the_drill_targets() {
        let s: School =
            toml::from_str("id = \"yey\"\nname = \"实验幼儿园\"\nkind = \"kindergarten\"\n")
                .unwrap();
        assert_eq!(s.kind.drill_interval_months(), 2);
        assert_eq!(s.kind.drills_per_school_year(), 4);
        assert_eq!(SchoolKind::Middle.drills_per_school_year(), 8);
        let schools = Schools::new(vec![s]);
        assert_eq!(schools.name_of("yey"), "实验幼儿园");
        assert_eq!(schools.name_of("nope"), "nope");
    }
}
