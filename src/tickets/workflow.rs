//! The rectification workflow as a pure state machine: who may do which action in which state,
//! and what the action changes. No I/O; the store applies the result under a version check.
//!
//! registered → (assign) rectifying → (report) reported → (verify) closed;
//! registered/rectifying → (defer) deferred → (assign) rectifying; reported → (reject)
//! rectifying; registered → (fix_now, 立查立改) reported. `supervise`/`unsupervise` set the
//! 督办 flag on any open ticket.
//!
//! Also the defaults a ticket is registered with: its deadline (by category and grade,
//! [`DeadlineConfig::for_ticket`]) and the office it is routed to
//! ([`TicketsConfig::office_for`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::{DeadlineConfig, TicketsConfig};
use super::model::{Category, Grade, State, Ticket};
use super::TicketError;
use crate::access::{Principal, Role};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Assign,
    Defer,
    Report,
    Verify,
    Reject,
    FixNow,
    Supervise,
    Unsupervise,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Assign,
        Action::Defer,
        Action::Report,
        Action::Verify,
        Action::Reject,
        Action::FixNow,
        Action::Supervise,
        Action::Unsupervise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Assign => "assign",
            Action::Defer => "defer",
            Action::Report => "report",
            Action::Verify => "verify",
            Action::Reject => "reject",
            Action::FixNow => "fix_now",
            Action::Supervise => "supervise",
            Action::Unsupervise => "unsupervise",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The workflow actions allowed in a state (supervision flags aside).
pub fn allowed_actions(state: State, supervised: bool) -> Vec<Action> {
    let mut actions = match state {
        State::Registered => vec![Action::Assign, Action::Defer, Action::FixNow],
        State::Rectifying => vec![Action::Assign, Action::Defer, Action::Report],
        State::Deferred => vec![Action::Assign],
        State::Reported => vec![Action::Verify, Action::Reject],
        State::Closed => vec![],
    };
    if state != State::Closed {
        actions.push(if supervised {
            Action::Unsupervise
        } else {
            Action::Supervise
        });
    }
    actions
}

/// The fields an action may carry (JSON body of `POST …/actions/{action}`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    /// The version the caller last saw; a stale one is refused (409).
    pub version: Option<i64>,
    pub responsible_unit: Option<String>,
    pub responsible_person: Option<String>,
    pub measures: Option<String>,
    /// 资金 (assign, fix_now).
    #[serde(default)]
    pub funding: Option<String>,
    /// 预案 (assign, defer).
    #[serde(default)]
    pub contingency_plan: Option<String>,
    /// Unix ms.
    pub deadline_at: Option<i64>,
    pub plan: Option<String>,
    pub interim_measures: Option<String>,
    pub rectification: Option<String>,
    /// Unix ms; default now.
    pub rectified_at: Option<i64>,
    pub reason: Option<String>,
    pub comment: Option<String>,
}

/// Checks that `who` may take `action` on `ticket` (roles of issue 5). Forbidden → 403.
pub fn authorize(action: Action, ticket: &Ticket, who: &Principal) -> Result<(), TicketError> {
    let Some(role) = who.role else {
        return Err(TicketError::Forbidden(
            "this action needs Authorization: Bearer <token>".into(),
        ));
    };
    if !who.may_see_school(&ticket.school) {
        return Err(TicketError::Forbidden(format!(
            "token is not scoped to school `{}`",
            ticket.school
        )));
    }
    let ok = match action {
        Action::Assign | Action::Defer | Action::Report | Action::FixNow => {
            matches!(role, Role::SchoolSafety | Role::Admin)
        }
        Action::Verify | Action::Reject => match role {
            Role::Bureau => true,
            Role::SchoolSafety | Role::Admin => {
                if ticket.reported_by.as_deref() == Some(who.name.as_str()) {
                    return Err(TicketError::Forbidden(
                        "the reporter of a rectification may not verify it; another school_safety user or the bureau must".into(),
                    ));
                }
                true
            }
            _ => false,
        },
        Action::Supervise | Action::Unsupervise => matches!(role, Role::Bureau | Role::Admin),
    };
    if ok {
        Ok(())
    } else {
        Err(TicketError::Forbidden(format!(
            "role `{}` may not {} tickets",
            role_name(role),
            action.as_str()
        )))
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::LabManager => "lab_manager",
        Role::SchoolSafety => "school_safety",
        Role::Bureau => "bureau",
        Role::Admin => "admin",
    }
}

/// Context the pure transition needs from outside.
pub struct Context {
    pub now: i64,
    pub actor: String,
    /// The default deadline (ms from now) for this ticket's grade and category.
    pub default_deadline_ms: i64,
    /// `report` needs an "after" photo for this ticket and it has none.
    pub missing_after_photo: bool,
}

/// Applies `action` to `ticket`, returning the ticket after it. Illegal in this state → 409.
pub fn apply(
    ticket: &Ticket,
    action: Action,
    input: &ActionInput,
    ctx: &Context,
) -> Result<Ticket, TicketError> {
    let allowed = allowed_actions(ticket.state, ticket.supervised);
    if !allowed.contains(&action) {
        return Err(TicketError::IllegalTransition {
            state: ticket.state,
            action,
            allowed,
        });
    }
    let mut t = ticket.clone();
    t.updated_at = ctx.now;
    match action {
        Action::Assign => {
            set_if(&mut t.responsible_unit, &input.responsible_unit);
            set_if(&mut t.responsible_person, &input.responsible_person);
            set_if(&mut t.measures, &input.measures);
            set_if(&mut t.funding, &input.funding);
            set_if(&mut t.contingency_plan, &input.contingency_plan);
            require(&t.responsible_unit, "responsible_unit")?;
            require(&t.responsible_person, "responsible_person")?;
            require(&t.measures, "measures")?;
            t.deadline_at = Some(
                input
                    .deadline_at
                    .or(t.deadline_at)
                    .unwrap_or(ctx.now + ctx.default_deadline_ms),
            );
            t.state = State::Rectifying;
        }
        Action::Defer => {
            t.deferral_plan = Some(required(&input.plan, "plan")?);
            t.interim_measures = Some(required(&input.interim_measures, "interim_measures")?);
            set_if(&mut t.contingency_plan, &input.contingency_plan);
            t.deadline_at = Some(input.deadline_at.ok_or_else(|| {
                TicketError::Invalid("defer needs a new deadline_at (Unix ms)".into())
            })?);
            t.state = State::Deferred;
        }
        Action::Report | Action::FixNow => {
            if action == Action::FixNow {
                set_if(&mut t.responsible_unit, &input.responsible_unit);
                set_if(&mut t.responsible_person, &input.responsible_person);
                set_if(&mut t.measures, &input.measures);
                set_if(&mut t.funding, &input.funding);
                // Fixed on the spot: what was done is the measure.
                set_if(&mut t.measures, &input.rectification);
                if input.measures.is_some() {
                    set_if(&mut t.measures, &input.measures);
                }
            }
            if ctx.missing_after_photo {
                return Err(TicketError::Invalid(
                    "this ticket's grade needs at least one \"after\" photo before report (POST …/attachments with kind=after)".into(),
                ));
            }
            t.rectification = Some(required(&input.rectification, "rectification")?);
            t.rectified_at = Some(input.rectified_at.unwrap_or(ctx.now));
            t.reported_by = Some(ctx.actor.clone());
            t.reported_at = Some(ctx.now);
            t.state = State::Reported;
        }
        Action::Verify => {
            t.verifier = Some(ctx.actor.clone());
            t.closed_at = Some(ctx.now);
            t.state = State::Closed;
        }
        Action::Reject => {
            t.reject_reason = Some(required(&input.reason, "reason")?);
            t.state = State::Rectifying;
        }
        Action::Supervise => {
            t.supervised = true;
            t.supervised_at = Some(ctx.now);
            t.supervised_by = Some(ctx.actor.clone());
        }
        Action::Unsupervise => {
            t.supervised = false;
        }
    }
    Ok(t)
}

fn set_if(field: &mut Option<String>, value: &Option<String>) {
    if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        *field = Some(v.to_string());
    }
}

fn require(field: &Option<String>, name: &str) -> Result<(), TicketError> {
    if field.as_deref().is_none_or(|v| v.trim().is_empty()) {
        return Err(TicketError::Invalid(format!("`{name}` is required")));
    }
    Ok(())
}

fn required(value: &Option<String>, name: &str) -> Result<String, TicketError> {
    require(value, name)?;
    Ok(value.as_deref().unwrap_or_default().trim().to_string())
}

/// `{field: [before, after]}` for every field that differs (version and updated_at aside).
pub fn diff(before: &Ticket, after: &Ticket) -> serde_json::Value {
    let (Ok(serde_json::Value::Object(b)), Ok(serde_json::Value::Object(a))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return serde_json::Value::Null;
    };
    let mut changes = serde_json::Map::new();
    for (key, after_value) in a {
        if key == "version" || key == "updated_at" {
            continue;
        }
        let before_value = b.get(&key).cloned().unwrap_or(serde_json::Value::Null);
        if before_value != after_value {
            changes.insert(key, serde_json::json!([before_value, after_value]));
        }
    }
    serde_json::Value::Object(changes)
}

impl DeadlineConfig {
    /// The time to rectify a ticket: its category's deadline for the grade, else the grade's.
    pub fn for_ticket(&self, category: Category, grade: Grade) -> Duration {
        let specific = self.category.get(&category).and_then(|g| match grade {
            Grade::General => g.general,
            Grade::Major => g.major,
        });
        specific.unwrap_or(match grade {
            Grade::General => self.general,
            Grade::Major => self.major,
        })
    }
}

impl TicketsConfig {
    /// Routing: the office (责任单位) a new ticket of `category` is registered to.
    pub fn office_for(&self, category: Category) -> String {
        self.routing
            .get(&category)
            .cloned()
            .unwrap_or_else(|| "办公室".to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tickets::model::{Category, Grade, SourceKind};

    fn ticket() -> Ticket {
        Ticket {
            id: "XHSY-202611-0001".into(),
            school: "xhsy".into(),
            state: State::Registered,
            version: 1,
            category: Category::Fire,
            grade: Grade::General,
            source: SourceKind::Inspection,
            inspector: Some("张三".into()),
            sensor: None,
            rule: None,
            alarm_class: None,
            location: "A栋101".into(),
            building: Some("A栋".into()),
            room: Some("101".into()),
            device: None,
            description: "灭火器过期".into(),
            responsible_unit: Some("办公室".into()),
            responsible_person: None,
            measures: None,
            funding: None,
            deadline_at: None,
            contingency_plan: None,
            deferral_plan: None,
            interim_measures: None,
            rectification: None,
            rectified_at: None,
            reported_by: None,
            reported_at: None,
            verifier: None,
            closed_at: None,
            reject_reason: None,
            supervised: false,
            supervised_at: None,
            supervised_by: None,
            previous_ticket: None,
            occurrences: 1,
            last_occurrence_at: None,
            found_at: 0,
            created_by: "inspector".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn ctx(actor: &str) -> Context {
        Context {
            now: 1000,
            actor: actor.into(),
            default_deadline_ms: 7 * 86_400_000,
            missing_after_photo: false,
        }
    }

    fn who(name: &str, role: Role) -> Principal {
        Principal {
            name: name.into(),
            role: Some(role),
            schools: Some(Arc::from(vec!["xhsy".to_string()])),
        }
    }

    fn input() -> ActionInput {
        ActionInput {
            responsible_person: Some("李四".into()),
            measures: Some("更换灭火器".into()),
            rectification: Some("已更换".into()),
            plan: Some("寒假施工".into()),
            interim_measures: Some("临时配备灭火器".into()),
            deadline_at: Some(5000),
            reason: Some("照片不清".into()),
            ..ActionInput::default()
        }
    }

    #[test]
    fn a_ticket_goes_from_registered_to_closed_through_reject_and_defer_loops() {
        let i = input();
        let mut t = apply(&ticket(), Action::Assign, &i, &ctx("safety")).unwrap();
        assert_eq!(t.state, State::Rectifying);
        assert_eq!(t.deadline_at, Some(5000));
        t = apply(&t, Action::Defer, &i, &ctx("safety")).unwrap();
        assert_eq!(t.state, State::Deferred);
        t = apply(&t, Action::Assign, &i, &ctx("safety")).unwrap();
        t = apply(&t, Action::Report, &i, &ctx("safety")).unwrap();
        assert_eq!(t.state, State::Reported);
        assert_eq!(t.reported_by.as_deref(), Some("safety"));
        t = apply(&t, Action::Reject, &i, &ctx("safety2")).unwrap();
        assert_eq!(t.state, State::Rectifying);
        t = apply(&t, Action::Report, &i, &ctx("safety")).unwrap();
        t = apply(&t, Action::Verify, &i, &ctx("safety2")).unwrap();
        assert_eq!(t.state, State::Closed);
        assert_eq!(t.verifier.as_deref(), Some("safety2"));
        assert_eq!(t.closed_at, Some(1000));
    }

    #[test]
    fn an_illegal_transition_names_the_state_and_the_allowed_actions() {
        let err = apply(&ticket(), Action::Verify, &input(), &ctx("x")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("registered"), "{text}");
        assert!(text.contains("assign, defer, fix_now"), "{text}");
        let closed = Ticket {
            state: State::Closed,
            ..ticket()
        };
        assert!(apply(&closed, Action::Supervise, &input(), &ctx("b")).is_err());
    }

    #[test]
    fn fix_now_registers_and_reports_in_one_step() {
        let t = apply(&ticket(), Action::FixNow, &input(), &ctx("safety")).unwrap();
        assert_eq!(t.state, State::Reported);
        assert_eq!(t.rectification.as_deref(), Some("已更换"));
    }

    #[test]
    fn report_without_the_required_after_photo_is_refused() {
        let t = apply(&ticket(), Action::Assign, &input(), &ctx("s")).unwrap();
        let mut c = ctx("s");
        c.missing_after_photo = true;
        assert!(matches!(
            apply(&t, Action::Report, &input(), &c),
            Err(TicketError::Invalid(_))
        ));
    }

    #[test]
    fn assign_without_a_person_or_measures_is_invalid() {
        let err = apply(
            &ticket(),
            Action::Assign,
            &ActionInput::default(),
            &ctx("s"),
        );
        assert!(matches!(err, Err(TicketError::Invalid(_))));
    }

    #[test]
    fn the_reporter_may_not_verify_but_another_safety_user_or_the_bureau_may() {
        let reported = Ticket {
            state: State::Reported,
            reported_by: Some("safety-1".into()),
            ..ticket()
        };
        let own = authorize(
            Action::Verify,
            &reported,
            &who("safety-1", Role::SchoolSafety),
        );
        assert!(matches!(own, Err(TicketError::Forbidden(_))));
        authorize(
            Action::Verify,
            &reported,
            &who("safety-2", Role::SchoolSafety),
        )
        .unwrap();
        authorize(Action::Verify, &reported, &who("bureau", Role::Bureau)).unwrap();
        assert!(authorize(Action::Verify, &reported, &who("op", Role::Operator)).is_err());
    }

    #[test]
    fn operators_and_other_schools_may_not_assign_and_only_the_bureau_supervises() {
        let t = ticket();
        assert!(authorize(Action::Assign, &t, &who("op", Role::Operator)).is_err());
        assert!(authorize(Action::Assign, &t, &who("lab", Role::LabManager)).is_err());
        assert!(authorize(Action::Assign, &t, &who("b", Role::Bureau)).is_err());
        let other_school = Principal {
            schools: Some(Arc::from(vec!["other".to_string()])),
            ..who("s", Role::SchoolSafety)
        };
        assert!(authorize(Action::Assign, &t, &other_school).is_err());
        authorize(Action::Assign, &t, &who("s", Role::SchoolSafety)).unwrap();
        authorize(Action::Supervise, &t, &who("b", Role::Bureau)).unwrap();
        assert!(authorize(Action::Supervise, &t, &who("s", Role::SchoolSafety)).is_err());
    }

    #[test]
    fn the_diff_lists_only_changed_fields() {
        let before = ticket();
        let after = apply(&before, Action::Assign, &input(), &ctx("s")).unwrap();
        let d = diff(&before, &after);
        assert_eq!(d["state"], serde_json::json!(["registered", "rectifying"]));
        assert!(d.get("school").is_none());
        assert!(d.get("updated_at").is_none());
    }

    const DAY: u64 = 24 * 3600;

    #[test]
    fn deadlines_fall_back_from_category_to_grade() {
        let cfg: TicketsConfig =
            toml::from_str("[deadlines]\ngeneral = \"5d\"\ncategory.fire = { general = \"2d\" }\n")
                .expect("parses");
        assert_eq!(
            cfg.deadlines.for_ticket(Category::Fire, Grade::General),
            Duration::from_secs(2 * DAY)
        );
        assert_eq!(
            cfg.deadlines.for_ticket(Category::Fire, Grade::Major),
            Duration::from_secs(30 * DAY)
        );
        assert_eq!(
            cfg.deadlines.for_ticket(Category::Other, Grade::General),
            Duration::from_secs(5 * DAY)
        );
    }
}
