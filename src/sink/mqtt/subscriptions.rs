//! The alert connection's subscriptions (operator commands, device shadow), and the filters left out because a
//! retained message on them is larger than the client accepts.
//!
//! MQTT 3.1.1 has no way to refuse one message: a retained message over the client's incoming limit (a 5 MB
//! payload on a commands topic) breaks the connection, and the broker hands it out again at every subscription —
//! a reconnect loop in which no alert is delivered. After a connection broke over an oversized packet, the next
//! connections subscribe one filter at a time and wait a moment after each SUBACK (retained messages follow it);
//! the filter whose retained message breaks the connection is left out until the daemon restarts, with an ERROR
//! that names it. Alerts and the other subscriptions go on.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// How long retained messages take to follow a SUBACK on a probing connection.
const SETTLE: Duration = Duration::from_millis(500);

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    /// Filters left out (a retained message on them is too large).
    skipped: Vec<String>,
    /// Subscribe one at a time on the next connection.
    probe: bool,
    /// This connection: filters not yet subscribed (probing).
    pending: VecDeque<String>,
    /// This connection: the filter being probed, and when its retained messages have had time to arrive.
    probing: Option<(String, Option<Instant>)>,
    /// This connection: SUBACKs outstanding.
    waiting: usize,
}

/// What to do after an event.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Step {
    /// Subscribe to these now.
    pub subscribe: Vec<String>,
    /// Every subscription of this connection is confirmed (or left out): time for the shadow's get (and, when
    /// probing, the `online` status).
    pub done: bool,
}

impl Subscriptions {
    /// Whether this connection subscribes one filter at a time.
    pub(super) fn probing(&self) -> bool {
        self.probe
    }

    /// A connection is up and wants `filters`: what to subscribe now.
    pub(super) fn connected(&mut self, filters: Vec<String>) -> Step {
        let mut filters: VecDeque<String> = filters
            .into_iter()
            .filter(|f| !self.skipped.contains(f))
            .collect();
        self.probing = None;
        self.pending.clear();
        if self.probe {
            let Some(first) = filters.pop_front() else {
                self.probe = false;
                return Step {
                    subscribe: Vec::new(),
                    done: true,
                };
            };
            self.pending = filters;
            self.waiting = 1;
            self.probing = Some((first.clone(), None));
            Step {
                subscribe: vec![first],
                done: false,
            }
        } else {
            self.waiting = filters.len();
            Step {
                done: filters.is_empty(),
                subscribe: filters.into(),
            }
        }
    }

    /// A SUBACK arrived.
    pub(super) fn suback(&mut self, now: Instant) -> Step {
        self.waiting = self.waiting.saturating_sub(1);
        if let Some((_, settle)) = self.probing.as_mut() {
            *settle = Some(now + SETTLE);
            return Step::default();
        }
        Step {
            subscribe: Vec::new(),
            done: self.waiting == 0,
        }
    }

    /// When the filter being probed has settled (its retained messages arrived without breaking anything).
    pub(super) fn settle_at(&self) -> Option<Instant> {
        self.probing.as_ref().and_then(|(_, s)| *s)
    }

    /// The probed filter settled: the next one, or done.
    pub(super) fn settled(&mut self) -> Step {
        self.probing = None;
        match self.pending.pop_front() {
            Some(next) => {
                self.waiting = 1;
                self.probing = Some((next.clone(), None));
                Step {
                    subscribe: vec![next],
                    done: false,
                }
            }
            None => {
                // Every filter subscribed without breaking the connection: the next one subscribes at once.
                self.probe = false;
                Step {
                    subscribe: Vec::new(),
                    done: true,
                }
            }
        }
    }

    /// The connection broke; `oversized` when over an incoming packet larger than the client accepts. Returns the
    /// filter left out from now on, if this found it.
    pub(super) fn broke(&mut self, oversized: bool) -> Option<String> {
        let probed = self.probing.take().map(|(f, _)| f);
        self.pending.clear();
        if !oversized {
            return None;
        }
        match probed {
            Some(f) => {
                self.skipped.push(f.clone());
                Some(f)
            }
            None => {
                self.probe = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters() -> Vec<String> {
        vec![
            "gw/commands/#".into(),
            "shadow/get/accepted".into(),
            "shadow/update/delta".into(),
        ]
    }

    #[test]
    fn normally_everything_at_once() {
        let mut s = Subscriptions::default();
        let step = s.connected(filters());
        assert_eq!((step.subscribe.len(), step.done), (3, false));
        let now = Instant::now();
        assert!(!s.suback(now).done);
        assert!(!s.suback(now).done);
        assert!(s.suback(now).done);
        assert_eq!(s.broke(false), None);
        assert!(!s.probing());
    }

    #[test]
    fn an_oversized_retained_message_is_found_and_its_filter_left_out() {
        let mut s = Subscriptions::default();
        s.connected(filters());
        // Broke while all three were subscribed: which one is not known yet.
        assert_eq!(s.broke(true), None);
        assert!(s.probing());
        let now = Instant::now();
        let step = s.connected(filters());
        assert_eq!(step.subscribe, vec!["gw/commands/#".to_string()]);
        assert_eq!(s.suback(now), Step::default());
        assert_eq!(s.settle_at(), Some(now + SETTLE));
        let step = s.settled();
        assert_eq!(step.subscribe, vec!["shadow/get/accepted".to_string()]);
        s.suback(now);
        // Its retained message breaks the connection: that filter is left out.
        assert_eq!(s.broke(true), Some("shadow/get/accepted".to_string()));
        // The next connection probes the others one by one and then is done.
        let step = s.connected(filters());
        assert_eq!(step.subscribe, vec!["gw/commands/#".to_string()]);
        s.suback(now);
        let step = s.settled();
        assert_eq!(step.subscribe, vec!["shadow/update/delta".to_string()]);
        s.suback(now);
        assert!(s.settled().done);
        assert!(!s.probing());
        // From then on at once, without the one left out.
        let step = s.connected(filters());
        assert_eq!(step.subscribe.len(), 2);
        assert!(!step.subscribe.contains(&"shadow/get/accepted".to_string()));
    }
}
