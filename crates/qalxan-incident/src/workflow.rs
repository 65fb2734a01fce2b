//! The incident's life: its statuses and the moves between them, the other closed sets an
//! incident carries (impact, PAP, victims), and the SLA timers.

use qalxan_core::{named_enum, Severity};

const MINUTE_MS: i64 = 60_000;

named_enum!(
    /// Where an incident stands. The order is the usual course of work.
    Status, "incident status", {
        New => "new",
        Triage => "triage",
        Investigating => "investigating",
        Contained => "contained",
        Eradicated => "eradicated",
        Recovered => "recovered",
        Closed => "closed",
    }
);

named_enum!(
    /// How badly the incident hurts the institutions it affects.
    Impact, "impact", {
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
);

named_enum!(
    /// Permissible Actions Protocol (FIRST): what recipients may do with the information.
    Pap, "PAP", {
        Clear => "PAP:CLEAR",
        Green => "PAP:GREEN",
        Amber => "PAP:AMBER",
        Red => "PAP:RED",
    }
);

named_enum!(
    /// Who fell victim.
    VictimKind, "victim kind", {
        /// Staff of a protected institution.
        Employee => "employee",
        /// A member of the public.
        Citizen => "citizen",
    }
);

named_enum!(
    /// An employee victim's kind of job: reports break victims down by it.
    VictimRole, "victim role", {
        Administrative => "administrative",
        Technical => "technical",
        Management => "management",
        Other => "other",
    }
);

named_enum!(
    /// Where an alert stands.
    AlertStatus, "alert status", {
        /// New, nobody looked yet; matching alerts aggregate into it.
        Open => "open",
        /// Someone looked at it; matching alerts still aggregate into it.
        Acknowledged => "acknowledged",
        /// Not worth an incident (with a reason).
        Dismissed => "dismissed",
        /// Folded into another alert.
        Merged => "merged",
        /// Became (or joined) an incident.
        Promoted => "promoted",
    }
);

impl AlertStatus {
    /// Whether new alerts with the same key still add to this one.
    pub fn aggregates(self) -> bool {
        matches!(self, AlertStatus::Open | AlertStatus::Acknowledged)
    }
}

named_enum!(
    /// A task's state.
    TaskStatus, "task status", {
        Open => "open",
        Done => "done",
        Cancelled => "cancelled",
    }
);

/// A status change that is not allowed, with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the incident is already {0}")]
    Same(Status),
    #[error("closing an incident needs a reason")]
    ReasonRequired,
    #[error("a closed incident can only be reopened (to triage or investigating), with a reason")]
    Reopen,
}

impl Status {
    /// Whether work on the incident is over.
    pub fn is_closed(self) -> bool {
        self == Status::Closed
    }

    /// Whether the incident is contained or later (the containment timer stopped).
    pub fn is_contained(self) -> bool {
        self >= Status::Contained
    }

    /// Checks a move. Work may move forward by any number of steps (a small incident can go
    /// from triage straight to closed) or back (containment failed); closing and reopening
    /// need a reason, and a closed incident reopens only into triage or investigating.
    pub fn check_transition(self, to: Status, reason: &str) -> Result<(), TransitionError> {
        if self == to {
            return Err(TransitionError::Same(to));
        }
        let has_reason = !reason.trim().is_empty();
        if to == Status::Closed && !has_reason {
            return Err(TransitionError::ReasonRequired);
        }
        if self == Status::Closed
            && (!matches!(to, Status::Triage | Status::Investigating) || !has_reason)
        {
            return Err(TransitionError::Reopen);
        }
        Ok(())
    }
}

/// How long the CERT may take, by severity: to triage (first assessment) and to contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlaPolicy {
    /// Per severity (info, low, medium, high, critical), in minutes.
    pub triage_minutes: [i64; 5],
    pub contain_minutes: [i64; 5],
}

impl Default for SlaPolicy {
    /// Figures in the range national CERTs publish: a critical incident triaged within the
    /// hour and contained within a day, a low one within days.
    fn default() -> Self {
        SlaPolicy {
            triage_minutes: [72 * 60, 24 * 60, 8 * 60, 4 * 60, 60],
            contain_minutes: [720 * 60, 168 * 60, 72 * 60, 24 * 60, 8 * 60],
        }
    }
}

fn severity_index(s: Severity) -> usize {
    match s {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

/// One SLA clock of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Timer {
    /// When it is due (Unix milliseconds).
    pub due_at: i64,
    /// When it was met, if it was.
    pub met_at: Option<i64>,
    /// Met late, or still running past its due time.
    pub overdue: bool,
}

impl Timer {
    fn new(due_at: i64, met_at: Option<i64>, now: i64) -> Timer {
        Timer {
            due_at,
            met_at,
            overdue: met_at.unwrap_or(now) > due_at,
        }
    }
}

impl SlaPolicy {
    /// The two clocks of an incident opened at `opened_at` with `severity`.
    pub fn timers(
        &self,
        severity: Severity,
        opened_at: i64,
        triaged_at: Option<i64>,
        contained_at: Option<i64>,
        now: i64,
    ) -> (Timer, Timer) {
        let i = severity_index(severity);
        (
            Timer::new(
                opened_at + self.triage_minutes[i] * MINUTE_MS,
                triaged_at,
                now,
            ),
            Timer::new(
                opened_at + self.contain_minutes[i] * MINUTE_MS,
                contained_at,
                now,
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qalxan_core::HOUR_MS;

    #[test]
    fn transitions() {
        assert!(Status::New.check_transition(Status::Triage, "").is_ok());
        assert!(Status::Triage.check_transition(Status::Closed, "").is_err());
        assert!(Status::Triage
            .check_transition(Status::Closed, "false positive")
            .is_ok());
        assert!(Status::Contained
            .check_transition(Status::Investigating, "")
            .is_ok());
        assert_eq!(
            Status::Closed.check_transition(Status::Recovered, "x"),
            Err(TransitionError::Reopen)
        );
        assert!(Status::Closed
            .check_transition(Status::Investigating, "new evidence")
            .is_ok());
        assert_eq!(
            Status::New.check_transition(Status::New, ""),
            Err(TransitionError::Same(Status::New))
        );
    }

    #[test]
    fn timers_run_until_met() {
        let p = SlaPolicy::default();
        let (triage, contain) = p.timers(Severity::Critical, 0, None, None, 2 * HOUR_MS);
        assert_eq!(triage.due_at, HOUR_MS);
        assert!(triage.overdue);
        assert!(!contain.overdue);
        let (triage, _) = p.timers(Severity::Critical, 0, Some(HOUR_MS / 2), None, 10 * HOUR_MS);
        assert!(!triage.overdue);
        assert!(Status::Eradicated.is_contained() && !Status::Triage.is_contained());
    }
}
