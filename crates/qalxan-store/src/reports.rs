//! The figures of the periodic report, computed from the data over any window: the events
//! table for the parts' figures (not the rollups, whose hourly grain would round the window),
//! the incident tables for incidents and victims, the alerts table for alerts.

use crate::{parse_column, Result, Store};
use qalxan_core::{EventKind, InstitutionId};
use qalxan_incident::{Category, PeriodicFigures};
use sqlx::Row;

/// Incidents listed in a report at most.
const MAX_LISTED: i64 = 500;

impl Store {
    /// The report's figures for `[from, to)`, for every institution or only `only`'s.
    pub async fn periodic_figures(
        &self,
        from: i64,
        to: i64,
        only: Option<InstitutionId>,
    ) -> Result<PeriodicFigures> {
        let inst = only.map(|i| i.0);
        let scope = match only {
            Some(i) => self
                .get_institution(i)
                .await?
                .map_or_else(|| format!("institution {}", i.0), |i| i.fields.name),
            None => "All institutions".to_owned(),
        };
        let mut f = PeriodicFigures {
            from,
            to,
            scope,
            ..Default::default()
        };

        let rows = sqlx::query(
            "SELECT kind, CAST(SUM(count) AS BIGINT) AS total, \
             MAX(COALESCE(value, count)) AS peak FROM events \
             WHERE occurred_at >= $1 AND occurred_at < $2 AND ($3 IS NULL OR institution_id = $3) \
             GROUP BY kind",
        )
        .bind(from)
        .bind(to)
        .bind(inst)
        .fetch_all(&self.read)
        .await?;
        let mut sums = std::collections::HashMap::new();
        for row in &rows {
            let kind: EventKind = parse_column(row, "events", "kind")?;
            sums.insert(
                kind,
                (
                    row.try_get::<i64, _>("total")?,
                    row.try_get::<i64, _>("peak")?,
                ),
            );
        }
        for kind in [
            EventKind::RequestBlocked,
            EventKind::DdosDetected,
            EventKind::AddressBanned,
            EventKind::FileInfected,
            EventKind::DocumentNeutralized,
            EventKind::IndicatorAdded,
        ] {
            let (total, peak) = sums.get(&kind).copied().unwrap_or((0, 0));
            f.figures.push((kind.label().to_owned(), total, peak));
        }

        let alerts = sqlx::query(
            "SELECT rule, COUNT(*) AS n FROM alerts WHERE first_seen >= $1 AND first_seen < $2 \
             AND ($3 IS NULL OR institution_id = $3) GROUP BY rule ORDER BY n DESC, rule",
        )
        .bind(from)
        .bind(to)
        .bind(inst)
        .fetch_all(&self.read)
        .await?;
        for row in &alerts {
            let n: i64 = row.try_get("n")?;
            f.alerts += n;
            f.alerts_by_rule.push((row.try_get("rule")?, n));
        }

        let visible = "($3 IS NULL OR EXISTS (SELECT 1 FROM incident_institutions s \
            WHERE s.incident_id = incidents.id AND s.institution_id = $3))";
        let opened = sqlx::query(&format!(
            "SELECT id, title, category, severity, status, opened_at FROM incidents \
             WHERE opened_at >= $1 AND opened_at < $2 AND {visible} ORDER BY id"
        ))
        .bind(from)
        .bind(to)
        .bind(inst)
        .fetch_all(&self.read)
        .await?;
        let mut by_class: Vec<(String, i64)> = Vec::new();
        let mut by_severity: Vec<(String, i64)> = Vec::new();
        let bump = |v: &mut Vec<(String, i64)>, k: String| match v.iter_mut().find(|(l, _)| *l == k)
        {
            Some((_, n)) => *n += 1,
            None => v.push((k, 1)),
        };
        for row in &opened {
            f.incidents_opened += 1;
            let category: String = row.try_get("category")?;
            let label = Category::parse(&category)
                .map(|c| c.class.label.to_owned())
                .unwrap_or(category.clone());
            bump(&mut by_class, label);
            let severity: String = row.try_get("severity")?;
            bump(&mut by_severity, severity.clone());
            if (f.incidents.len() as i64) < MAX_LISTED {
                let opened_at: i64 = row.try_get("opened_at")?;
                f.incidents.push(vec![
                    row.try_get::<i64, _>("id")?.to_string(),
                    row.try_get("title")?,
                    category,
                    severity,
                    row.try_get("status")?,
                    qalxan_core::format_rfc3339(opened_at)[..10].to_owned(),
                ]);
            }
        }
        by_class.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        f.by_category = by_class;
        let order = |s: &str| {
            s.parse::<qalxan_core::Severity>()
                .map(std::cmp::Reverse)
                .ok()
        };
        by_severity.sort_by_key(|(s, _)| order(s));
        f.by_severity = by_severity;

        f.incidents_closed = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM incidents WHERE closed_at >= $1 AND closed_at < $2 AND {visible}"
        ))
        .bind(from)
        .bind(to)
        .bind(inst)
        .fetch_one(&self.read)
        .await?;

        let per_institution = sqlx::query(&format!(
            "SELECT i.name, COUNT(*) AS n FROM incident_institutions ii \
             JOIN incidents ON incidents.id = ii.incident_id JOIN institutions i ON i.id = ii.institution_id \
             WHERE incidents.opened_at >= $1 AND incidents.opened_at < $2 AND {visible} \
             AND ($3 IS NULL OR ii.institution_id = $3) \
             GROUP BY i.name ORDER BY n DESC, i.name"
        ))
        .bind(from)
        .bind(to)
        .bind(inst)
        .fetch_all(&self.read)
        .await?;
        for row in &per_institution {
            f.by_institution
                .push((row.try_get("name")?, row.try_get("n")?));
        }

        // Victims recorded in the window. A scoped report counts the institution's own
        // employees and the citizens of the incidents it can see.
        let victims = sqlx::query(
            "SELECT v.kind, v.role, v.institution_id, CAST(SUM(v.count) AS BIGINT) AS n \
             FROM incident_victims v JOIN incidents ON incidents.id = v.incident_id \
             WHERE v.recorded_at >= $1 AND v.recorded_at < $2 AND ($3 IS NULL OR v.institution_id = $3 \
             OR (v.kind = 'citizen' AND EXISTS (SELECT 1 FROM incident_institutions s \
             WHERE s.incident_id = incidents.id AND s.institution_id = $3))) \
             GROUP BY v.kind, v.role, v.institution_id",
        )
        .bind(from)
        .bind(to)
        .bind(inst)
        .fetch_all(&self.read)
        .await?;
        let mut employers = std::collections::BTreeSet::new();
        let mut roles: Vec<(String, i64)> = Vec::new();
        for row in &victims {
            let kind: String = row.try_get("kind")?;
            let n: i64 = row.try_get("n")?;
            if kind == "citizen" {
                f.citizens += n;
                continue;
            }
            f.employees += n;
            if let Some(i) = row.try_get::<Option<i64>, _>("institution_id")? {
                employers.insert(i);
            }
            let role: String = row.try_get("role")?;
            let role = if role.is_empty() {
                "unspecified".to_owned()
            } else {
                role
            };
            if role == "administrative" {
                f.administrative += n;
            }
            match roles.iter_mut().find(|(r, _)| *r == role) {
                Some((_, m)) => *m += n,
                None => roles.push((role, n)),
            }
        }
        roles.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        f.victims_by_role = roles;
        f.employee_institutions = employers.len() as i64;
        Ok(f)
    }
}
