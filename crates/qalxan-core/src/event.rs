//! What the parts of the platform report, and the periods the dashboard aggregates over.

use crate::named_enum;

named_enum!(
    /// The kinds of event the parts of the platform report through the events API.
    ///
    /// The dashboard's figures are sums over these; adding a producer means adding a kind here,
    /// never a new counter table.
    EventKind, "event kind", {
        /// The gateway blocked a malicious request (`count` requests).
        RequestBlocked => "waf.blocked",
        /// A denial-of-service flood was detected; `value` is its peak in requests per second.
        DdosDetected => "ddos.detected",
        /// The scan engine stopped an infected file.
        FileInfected => "scan.infected",
        /// The document sandbox neutralised a malicious document.
        DocumentNeutralized => "doc.neutralized",
        /// An indicator of attack entered the threat-intelligence store.
        IndicatorAdded => "intel.indicator",
        /// An incident was opened.
        IncidentOpened => "incident.opened",
        /// An incident was closed.
        IncidentClosed => "incident.closed",
        /// A person fell victim to an attack (an institution's employee or a citizen).
        VictimRecorded => "incident.victim",
        /// The gateway banned a client address for a while (floods, repeated attacks).
        AddressBanned => "gateway.banned",
    }
);

impl EventKind {
    /// The figure's name on the dashboard and in reports.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::RequestBlocked => "Malicious requests blocked",
            EventKind::DdosDetected => "DDoS events",
            EventKind::FileInfected => "Infected files stopped",
            EventKind::DocumentNeutralized => "Malicious documents neutralised",
            EventKind::IndicatorAdded => "Indicators of attack",
            EventKind::IncidentOpened => "Incidents opened",
            EventKind::IncidentClosed => "Incidents closed",
            EventKind::VictimRecorded => "Victims",
            EventKind::AddressBanned => "Addresses banned",
        }
    }
}

named_enum!(
    /// The time windows the overview offers.
    Period, "period", {
        Day => "24h",
        Month => "30d",
        HalfYear => "6m",
    }
);

/// One hour and one day: the two grains of the stored rollups. Every period's bins are whole
/// units of one of them, so the dashboard sums a few rollup rows per bin.
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

impl Period {
    pub fn label(self) -> &'static str {
        match self {
            Period::Day => "24 hours",
            Period::Month => "30 days",
            Period::HalfYear => "6 months",
        }
    }

    /// Width of one chart bin.
    pub fn bin_ms(self) -> i64 {
        match self {
            Period::Day => HOUR_MS,
            Period::Month => DAY_MS,
            Period::HalfYear => 7 * DAY_MS,
        }
    }

    pub fn bins(self) -> usize {
        match self {
            Period::Day => 24,
            Period::Month => 30,
            Period::HalfYear => 26,
        }
    }

    /// The rollup grain the window aligns to: hours for hourly bins, days (UTC) otherwise.
    pub fn grain_ms(self) -> i64 {
        if self.bin_ms() % DAY_MS == 0 {
            DAY_MS
        } else {
            HOUR_MS
        }
    }

    /// The half-open window `[start, end)` ending with the hour (or UTC day, for periods with
    /// day-sized bins) that contains `now_ms`.
    pub fn window(self, now_ms: i64) -> (i64, i64) {
        let end = bucket(now_ms, self.grain_ms()) + self.grain_ms();
        (end - self.bin_ms() * self.bins() as i64, end)
    }
}

/// Start of the `width`-long interval (aligned to the Unix epoch) that contains `ms`.
pub fn bucket(ms: i64, width: i64) -> i64 {
    ms - ms.rem_euclid(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_after_now_on_their_grain() {
        let now = 1_700_000_123_456;
        let (start, end) = Period::Day.window(now);
        assert_eq!(end % HOUR_MS, 0);
        assert!(end > now && end - now <= HOUR_MS);
        assert_eq!(end - start, 24 * HOUR_MS);
        let (start, end) = Period::Month.window(now);
        assert_eq!((start % DAY_MS, end % DAY_MS), (0, 0));
        assert!(end > now && end - now <= DAY_MS);
        let (start, end) = Period::HalfYear.window(now);
        assert_eq!(end - start, 182 * DAY_MS);
        assert_eq!(start % DAY_MS, 0);
    }

    #[test]
    fn buckets_handle_times_before_1970() {
        assert_eq!(bucket(-1, HOUR_MS), -HOUR_MS);
        assert_eq!(bucket(HOUR_MS, HOUR_MS), HOUR_MS);
        assert_eq!(bucket(DAY_MS + 5, DAY_MS), DAY_MS);
    }

    #[test]
    fn event_kinds_parse() {
        assert_eq!("waf.blocked".parse(), Ok(EventKind::RequestBlocked));
        assert!("waf.block".parse::<EventKind>().is_err());
    }
}
