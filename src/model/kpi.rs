//! Alarm-system KPIs (EEMUA 191, ISA-18.2 §16): computed from the stored alert events of a period and the alarms
//! standing now. Pure: the caller passes the events, the standing alarms and the period.
//!
//! * **annunciated**: raises of process alarms (threshold, rate of change, deviation) that reached a person — not
//!   shelved, not held during a flood;
//! * **per 10 minutes / per hour**: the average over the period (EEMUA 191: about 1 per 10 minutes is acceptable,
//!   2 manageable) and the busiest 10 minutes;
//! * **flood**: the share of 10-minute periods with more than `flood_count` annunciated alarms (target < 1 %);
//! * **bad actors**: the ten sensors with the most annunciated alarms and their share of the load;
//! * **chattering**, **stale** and **standing** alarms, floods, held alarms.

use super::{ActiveAlert, Alert, AlertState, AlertType, Timestamp};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

const TEN_MINUTES_MS: i64 = 600_000;

/// One sensor's share of the alarm load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadActor {
    /// Sensor id.
    pub sensor: String,
    /// Annunciated alarms in the period.
    pub alarms: u64,
    /// Their share of all annunciated alarms, in %.
    pub share_percent: f64,
}

/// The KPIs of one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpi {
    /// Start of the period (RFC 3339).
    pub since: String,
    /// End of the period (RFC 3339).
    pub until: String,
    /// Annunciated alarms.
    pub annunciated: u64,
    /// Average annunciated alarms per 10 minutes.
    pub per_10min: f64,
    /// Average annunciated alarms per hour.
    pub per_hour: f64,
    /// The most annunciated alarms in one 10-minute period.
    pub max_per_10min: u64,
    /// Share of 10-minute periods in flood (more than `flood_count` alarms), in %.
    pub flood_percent: f64,
    /// EEMUA 191's reading of the average rate: `acceptable` (≤ 1 per 10 min), `manageable` (≤ 2),
    /// `demanding` (≤ 5) or `overloaded`.
    pub rating: &'static str,
    /// ALARM_FLOOD raised in the period.
    pub floods: u64,
    /// Low-priority alarms held during floods.
    pub held: u64,
    /// Sensors flagged chattering in the period.
    pub chattering: u64,
    /// Alarms standing now (active, or returned to normal and unacknowledged).
    pub standing: u64,
    /// Standing alarms active for longer than `stale_after`.
    pub stale: u64,
    /// The ten sensors with the most annunciated alarms.
    pub bad_actors: Vec<BadActor>,
    /// The share of all annunciated alarms that the bad actors caused, in %.
    pub bad_actors_percent: f64,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Kpi {
    /// The KPIs of `[since, until)` from the events of that period (any order; events outside it are ignored) and
    /// the alarms standing at `until`; a 10-minute period with more than `flood_count` alarms is in flood, and a
    /// standing alarm active for `stale_after` is stale (`[alarms]`).
    pub fn compute(
        events: &[Alert],
        standing: &[ActiveAlert],
        period: (Timestamp, Timestamp),
        flood_count: usize,
        stale_after: Duration,
    ) -> Kpi {
        let mut t = Tally::new(period);
        for a in events {
            t.add(a);
        }
        t.finish(standing, flood_count, stale_after)
    }
}

/// The KPIs' counts, fed one event at a time: what a day of events costs is one count per sensor and per 10
/// minutes, not the events (a busy gateway stores millions a day).
#[derive(Debug)]
pub struct Tally {
    since: Timestamp,
    until: Timestamp,
    buckets: HashMap<i64, u64>,
    by_sensor: HashMap<String, u64>,
    annunciated: u64,
    floods: u64,
    held: u64,
    chattering: u64,
}

impl Tally {
    /// Counts for the period `[since, until)`.
    pub fn new((since, until): (Timestamp, Timestamp)) -> Tally {
        Tally {
            since,
            until,
            buckets: HashMap::new(),
            by_sensor: HashMap::new(),
            annunciated: 0,
            floods: 0,
            held: 0,
            chattering: 0,
        }
    }

    /// Count one stored event (anything but a raise, or outside the period, counts nothing).
    pub fn add(&mut self, a: &Alert) {
        if a.ts < self.since || a.ts >= self.until || a.state != AlertState::Raised {
            return;
        }
        match a.kind {
            AlertType::AlarmFlood => self.floods += 1,
            AlertType::Chattering => self.chattering += 1,
            _ if a.is_process_alarm() && a.operator.held => self.held += 1,
            _ if a.is_process_alarm() && a.annunciates() => {
                self.annunciated += 1;
                *self
                    .buckets
                    .entry((a.ts.0 - self.since.0) / TEN_MINUTES_MS)
                    .or_default() += 1;
                match self.by_sensor.get_mut(a.sensor.as_str()) {
                    Some(n) => *n += 1,
                    None => {
                        self.by_sensor.insert(a.sensor.clone(), 1);
                    }
                }
            }
            _ => {}
        }
    }

    /// The KPIs, with the alarms standing at the period's end.
    pub fn finish(
        self,
        standing: &[ActiveAlert],
        flood_count: usize,
        stale_after: Duration,
    ) -> Kpi {
        let Tally {
            since,
            until,
            buckets,
            by_sensor,
            annunciated,
            floods,
            held,
            chattering,
        } = self;
        let span_ms = until.0.saturating_sub(since.0).max(1);
        let periods = (span_ms + TEN_MINUTES_MS - 1) / TEN_MINUTES_MS;
        let in_flood = buckets
            .values()
            .filter(|n| **n as usize > flood_count)
            .count();
        let mut actors: Vec<(String, u64)> = by_sensor.into_iter().collect();
        actors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        actors.truncate(10);
        let share = |n: u64| {
            if annunciated == 0 {
                0.0
            } else {
                round2(n as f64 * 100.0 / annunciated as f64)
            }
        };
        let per_10min = annunciated as f64 / (span_ms as f64 / TEN_MINUTES_MS as f64);
        let process = |a: &&ActiveAlert| {
            matches!(
                a.kind,
                AlertType::Alert | AlertType::RateOfChange | AlertType::Deviation
            )
        };
        Kpi {
            since: since.rfc3339(),
            until: until.rfc3339(),
            annunciated,
            per_10min: round2(per_10min),
            per_hour: round2(per_10min * 6.0),
            max_per_10min: buckets.values().copied().max().unwrap_or(0),
            flood_percent: round2(in_flood as f64 * 100.0 / periods.max(1) as f64),
            rating: match per_10min {
                r if r <= 1.0 => "acceptable",
                r if r <= 2.0 => "manageable",
                r if r <= 5.0 => "demanding",
                _ => "overloaded",
            },
            floods,
            held,
            chattering,
            standing: standing.iter().filter(process).count() as u64,
            stale: standing
                .iter()
                .filter(process)
                .filter(|a| !a.returned && until.since(a.since) >= stale_after)
                .count() as u64,
            bad_actors_percent: share(actors.iter().map(|(_, n)| n).sum()),
            bad_actors: actors
                .into_iter()
                .map(|(sensor, n)| BadActor {
                    sensor,
                    alarms: n,
                    share_percent: share(n),
                })
                .collect(),
        }
    }
}

impl Kpi {
    /// A table for people.
    pub fn table(&self) -> String {
        let mut s = format!(
            "Alarm KPIs from {} to {}\n\n\
             annunciated alarms        {}\n\
             per 10 minutes (average)  {}   (EEMUA 191: ~1 acceptable, ≤ 2 manageable) — {}\n\
             per hour (average)        {}\n\
             busiest 10 minutes        {}\n\
             10-minute periods flooded {} %   (target < 1 %)\n\
             floods                    {}\n\
             held during floods        {}\n\
             chattering                {}\n\
             standing now              {}\n\
             stale now                 {}\n",
            self.since,
            self.until,
            self.annunciated,
            self.per_10min,
            self.rating,
            self.per_hour,
            self.max_per_10min,
            self.flood_percent,
            self.floods,
            self.held,
            self.chattering,
            self.standing,
            self.stale
        );
        if !self.bad_actors.is_empty() {
            s.push_str(&format!(
                "\nTop {} bad actors ({} % of the load)\n  {:<32} {:>8} {:>8}\n",
                self.bad_actors.len(),
                self.bad_actors_percent,
                "sensor",
                "alarms",
                "share %"
            ));
            for b in &self.bad_actors {
                s.push_str(&format!(
                    "  {:<32} {:>8} {:>8}\n",
                    b.sensor, b.alarms, b.share_percent
                ));
            }
        }
        s
    }

    /// The alarms standing after `events` (all of a store's, oldest first): each alarm's last event says
    /// whether it still stands (see [`Alert::standing`]).
    pub fn standing(events: &[Alert]) -> Vec<ActiveAlert> {
        let mut last: HashMap<&str, &Alert> = HashMap::new();
        for a in events.iter().filter(|a| !a.is_audit()) {
            last.insert(a.id.as_str(), a);
        }
        let mut v: Vec<ActiveAlert> = last
            .into_values()
            .filter(|a| a.standing())
            .map(|a| ActiveAlert {
                id: a.id.clone(),
                kind: a.kind,
                sensor: a.sensor.clone(),
                severity: a.severity,
                direction: a.direction,
                since: a.since,
                acked: a.operator.acked,
                shelved_until: a.operator.shelved_until,
                returned: a.state == AlertState::Cleared,
                priority: a.operator.priority,
                stale: false,
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// `metric,value` lines (bad actors as `bad_actor:<sensor>`).
    pub fn csv(&self) -> String {
        let mut s = String::from("metric,value\n");
        for (k, v) in [
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("annunciated", self.annunciated.to_string()),
            ("per_10min", self.per_10min.to_string()),
            ("per_hour", self.per_hour.to_string()),
            ("max_per_10min", self.max_per_10min.to_string()),
            ("flood_percent", self.flood_percent.to_string()),
            ("rating", self.rating.to_string()),
            ("floods", self.floods.to_string()),
            ("held", self.held.to_string()),
            ("chattering", self.chattering.to_string()),
            ("standing", self.standing.to_string()),
            ("stale", self.stale.to_string()),
            ("bad_actors_percent", self.bad_actors_percent.to_string()),
        ] {
            s.push_str(&format!("{k},{v}\n"));
        }
        for b in &self.bad_actors {
            // Sensor ids may hold commas or quotes: quoted as CSV asks.
            s.push_str(&format!(
                "\"bad_actor:{}\",{}\n",
                b.sensor.replace('"', "\"\""),
                b.alarms
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests;
