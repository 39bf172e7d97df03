//! Identity: who a caller is ([`Principal`]), what their [`Role`] lets them do, and which
//! schools they may see (their scope). It sits below the floors that use it: the HTTP layer
//! (`api::auth`) finds the principal of a request, console users and their sessions (`users`)
//! store it, and the ticket service (`tickets`) checks it. All of them import identity from
//! here; this module imports none of them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a user or token may do. The config and the `users` table spell it in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    LabManager,
    SchoolSafety,
    Bureau,
    Admin,
}

impl Role {
    /// Who may acknowledge, shelve and reset alarms: the people watching them.
    pub fn handles_alarms(self) -> bool {
        matches!(self, Role::Operator | Role::LabManager | Role::Admin)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::LabManager => "lab_manager",
            Role::SchoolSafety => "school_safety",
            Role::Bureau => "bureau",
            Role::Admin => "admin",
        }
    }
}

/// The caller of a request: a token, a console user, or anonymous (no role).
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Option<Role>,
    /// `None` = every school.
    pub schools: Option<Arc<[String]>>,
}

impl Principal {
    /// A token or user with a role, scoped to `schools` (`None` = every school).
    pub fn new(name: &str, role: Role, schools: Option<Vec<String>>) -> Self {
        Self {
            name: name.to_string(),
            role: Some(role),
            schools: schools.map(Into::into),
        }
    }

    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: None,
            schools: None,
        }
    }

    pub fn may_see_school(&self, school: &str) -> bool {
        self.schools
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == school))
    }

    /// The schools a listing or export is limited to (`None` = every school).
    pub fn scope(&self) -> Option<&[String]> {
        self.schools.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_principal_sees_only_its_schools_and_an_unscoped_one_all() {
        let scoped = Principal::new("li", Role::Operator, Some(vec!["xhsy".into()]));
        assert!(scoped.may_see_school("xhsy"));
        assert!(!scoped.may_see_school("dfzx"));
        assert_eq!(scoped.scope(), Some(&["xhsy".to_string()][..]));
        let all = Principal::new("wang", Role::Bureau, None);
        assert!(all.may_see_school("dfzx"));
        assert_eq!(all.scope(), None);
    }
}
