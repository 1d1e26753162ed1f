//! Operator commands over MQTT (`[mqtt.commands]`): `{prefix}/{gateway}/commands/{verb}` with a JSON body,
//! answered on `{prefix}/{gateway}/commands/response`.
//!
//! Verbs: `ack` (`id`), `shelve` (`id` or `sensor`, `duration`), `unshelve` (`id` or `sensor`), `out_of_service`
//! and `in_service` (`sensor`). Every command needs `by` (who) and may carry `note` and `request_id` (echoed in
//! the answer; the MQTT 3.1.1 session has no response-topic/correlation-data properties). The command goes to the
//! alarm engine on the ingest thread and is answered after its events are committed. Malformed messages are
//! counted and answered; none blocks alert delivery (the queue to the engine is bounded and a full queue is
//! answered `busy`). The broker's ACLs decide who may publish here.

use super::shadow::Out;
use crate::channels::Control;
use crate::metrics::SharedMetrics;
use crate::model::{Command, Request, Target, Timestamp};
use crate::util::Throttle;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Largest command message read.
const MAX_COMMAND: usize = 4096;
/// Longest request id kept (JSON text).
const MAX_REQUEST_ID: usize = 128;
/// How long an answer may take (the ingest thread is busy committing).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The JSON body of a command.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default)]
    request_id: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    sensor: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// Printable text of at most `max` characters (no control characters reach logs, events or mail headers).
fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Read a command: the verb from the topic, the rest from the JSON body. The request id (when readable) comes
/// back even when the command is refused.
pub(super) fn parse(
    verb: &str,
    payload: &[u8],
    max_shelve: Duration,
    now: Timestamp,
) -> (Option<serde_json::Value>, Result<Request, String>) {
    if payload.len() > MAX_COMMAND {
        return (
            None,
            Err(format!("message larger than {MAX_COMMAND} bytes")),
        );
    }
    let body: Body = match serde_json::from_slice(payload) {
        Ok(b) => b,
        Err(e) => {
            // Still find the request id if the body is an object with one.
            let rid = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v.get("request_id").cloned());
            return (rid, Err(format!("not a command: {e}")));
        }
    };
    let rid = body.request_id.clone();
    (rid, request(verb, body, max_shelve, now))
}

fn request(verb: &str, b: Body, max_shelve: Duration, now: Timestamp) -> Result<Request, String> {
    let by =
        b.by.as_deref()
            .map(|s| clean(s, 64))
            .filter(|s| !s.trim().is_empty())
            .ok_or("\"by\" is required: who gives the command")?;
    let note = b.note.as_deref().map(|s| clean(s, 256));
    let request_id = b.request_id.as_ref().map(|v| v.to_string());
    if request_id
        .as_ref()
        .is_some_and(|r| r.len() > MAX_REQUEST_ID)
    {
        return Err(format!(
            "\"request_id\" is longer than {MAX_REQUEST_ID} characters"
        ));
    }
    let id = b.id.as_deref().map(|s| clean(s, 256));
    let sensor = b.sensor.as_deref().map(|s| clean(s, 256));
    let target = || match (&id, &sensor) {
        (Some(i), None) => Ok(Target::Alert(i.clone())),
        (None, Some(s)) => Ok(Target::Sensor(s.clone())),
        _ => Err("give either \"id\" (an alarm) or \"sensor\"".to_string()),
    };
    let sensor_only = || {
        if id.is_some() {
            return Err("takes \"sensor\", not \"id\"".to_string());
        }
        sensor.clone().ok_or("\"sensor\" is required".to_string())
    };
    if verb != "shelve" && b.duration.is_some() {
        return Err(format!("{verb} takes no \"duration\""));
    }
    let cmd = match verb {
        "ack" => {
            if sensor.is_some() {
                return Err("ack takes the alarm \"id\", not \"sensor\"".into());
            }
            Command::Ack {
                id: id.ok_or("\"id\" is required")?,
            }
        }
        "shelve" => {
            let d = b
                .duration
                .as_deref()
                .ok_or("\"duration\" is required (e.g. \"2h\")")?;
            let d = humantime::parse_duration(d).map_err(|e| format!("\"duration\" {d:?}: {e}"))?;
            if d.is_zero() {
                return Err("\"duration\" must be more than 0".into());
            }
            if d > max_shelve {
                return Err(format!(
                    "\"duration\" {} is over the cap of {} (mqtt.commands.max_shelve)",
                    humantime::format_duration(d),
                    humantime::format_duration(max_shelve)
                ));
            }
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            Command::Shelve {
                target: target()?,
                until: Timestamp(now.0.saturating_add(ms)),
            }
        }
        "unshelve" => Command::Unshelve { target: target()? },
        "out_of_service" => Command::OutOfService {
            sensor: sensor_only()?,
        },
        "in_service" => Command::InService {
            sensor: sensor_only()?,
        },
        other => {
            return Err(format!(
            "unknown command {:?}: expected ack, shelve, unshelve, out_of_service or in_service",
            clean(other, 64)
        ))
        }
    };
    Ok(Request {
        cmd,
        by,
        note,
        request_id,
    })
}

/// The answer published on `commands/response`.
fn answer(
    verb: &str,
    rid: Option<serde_json::Value>,
    result: &Result<Vec<String>, String>,
) -> String {
    let mut v = serde_json::json!({
        "request_id": rid,
        "command": clean(verb, 64),
        "ts": Timestamp::now().rfc3339(),
    });
    match result {
        Ok(ids) => {
            v["status"] = "accepted".into();
            v["alert_ids"] = serde_json::json!(ids);
        }
        Err(reason) => {
            v["status"] = "rejected".into();
            v["reason"] = reason.clone().into();
        }
    }
    v.to_string()
}

/// The command side of the alert connection.
pub(super) struct Commands {
    base: String,
    max_shelve: Duration,
    control: mpsc::Sender<Control>,
    responses: mpsc::Sender<Out>,
    metrics: SharedMetrics,
    refused_log: Throttle,
}

impl Commands {
    /// For the gateway's topic base; answers go out through `responses` (the session publishes them).
    pub(super) fn new(
        base: &str,
        max_shelve: Duration,
        control: mpsc::Sender<Control>,
        responses: mpsc::Sender<Out>,
        metrics: SharedMetrics,
    ) -> Self {
        Commands {
            base: format!("{base}/commands"),
            max_shelve,
            control,
            responses,
            metrics,
            refused_log: Throttle::new(Duration::from_secs(10)),
        }
    }

    /// The subscription.
    pub(super) fn subscription(&self) -> String {
        format!("{}/#", self.base)
    }

    fn response_topic(&self) -> String {
        format!("{}/response", self.base)
    }

    /// Handle a message if it is on the command topics (true); never waits. A `retained` message is refused: the
    /// broker hands it out again at every (re)subscription, so running it would undo later operator actions at
    /// each restart or reconnect.
    pub(super) fn handle(&mut self, topic: &str, payload: &[u8], retained: bool) -> bool {
        let Some(verb) = topic
            .strip_prefix(self.base.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        if verb == "response" || payload.is_empty() {
            // Our own answers, and retained-message deletions, are not commands.
            return true;
        }
        let (rid, req) = parse(verb, payload, self.max_shelve, Timestamp::now());
        let req = if retained {
            Err("a retained message is not executed: the broker delivers it again at every subscription, so it \
                 would run at each restart and reconnect; publish commands with retain = false"
                .to_string())
        } else {
            req
        };
        let req = match req {
            Ok(r) => r,
            Err(reason) => {
                self.metrics
                    .commands_malformed
                    .fetch_add(1, Ordering::Relaxed);
                self.refused(verb, &reason);
                self.respond(answer(verb, rid, &Err(reason)));
                return true;
            }
        };
        let (tx, rx) = oneshot::channel();
        if self
            .control
            .try_send(Control::Command(req.clone(), tx))
            .is_err()
        {
            self.metrics
                .commands_rejected
                .fetch_add(1, Ordering::Relaxed);
            let busy = Err("busy: too many commands queued; try again".to_string());
            self.refused(verb, "busy");
            self.respond(answer(verb, rid, &busy));
            return true;
        }
        let (responses, topic, metrics) = (
            self.responses.clone(),
            self.response_topic(),
            self.metrics.clone(),
        );
        let verb = verb.to_string();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(ANSWER_WITHIN, rx).await {
                Ok(Ok(r)) => r,
                _ => Err("no answer from the alarm engine in time".to_string()),
            };
            match &result {
                Ok(ids) => {
                    metrics.commands_accepted.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(command = %verb, by = %req.by, alert_ids = ?ids, "Operator command applied.");
                }
                Err(reason) => {
                    metrics.commands_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(command = %verb, by = %req.by, reason = %reason, "Operator command refused.");
                }
            }
            let out = Out {
                topic,
                payload: answer(&verb, rid, &result),
                retain: false,
            };
            let _ = responses.send(out).await;
        });
        true
    }

    fn refused(&mut self, verb: &str, reason: &str) {
        if let Some(quiet) = self.refused_log.ready() {
            tracing::warn!(command = %clean(verb, 64), reason = %reason, not_logged_since = quiet, "Refused a malformed operator command.");
        }
    }

    fn respond(&self, payload: String) {
        let out = Out {
            topic: self.response_topic(),
            payload,
            retain: false,
        };
        // A full answer queue drops the answer, never the session's time.
        let _ = self.responses.try_send(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(8 * 3600);
    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn p(verb: &str, body: &str) -> Result<Request, String> {
        parse(verb, body.as_bytes(), CAP, NOW).1
    }

    #[test]
    fn commands_read_and_refusals_name_the_problem() {
        assert_eq!(
            p("ack", r#"{"id":"gw:t:3","by":"alice","note":"on it"}"#),
            Ok(Request {
                cmd: Command::Ack {
                    id: "gw:t:3".into()
                },
                by: "alice".into(),
                note: Some("on it".into()),
                request_id: None,
            })
        );
        assert_eq!(
            p("shelve", r#"{"sensor":"t","duration":"2h","by":"bob"}"#).map(|r| r.cmd),
            Ok(Command::Shelve {
                target: Target::Sensor("t".into()),
                until: Timestamp(NOW.0 + 7_200_000)
            })
        );
        let err = |verb, body| p(verb, body).unwrap_err();
        assert!(err("ack", r#"{"id":"x"}"#).contains("\"by\" is required"));
        assert!(err("shelve", r#"{"id":"x","by":"a","duration":"9h"}"#).contains("over the cap"));
        assert!(err("shelve", r#"{"id":"x","by":"a"}"#).contains("\"duration\" is required"));
        assert!(err(
            "shelve",
            r#"{"id":"x","sensor":"t","by":"a","duration":"1h"}"#
        )
        .contains("either"));
        assert!(err("ack", r#"{"id":"x","by":"a","colour":"red"}"#).contains("unknown field"));
        assert!(err("reboot", r#"{"by":"a"}"#).contains("unknown command"));
        assert!(err("ack", "not json").contains("not a command"));
        assert!(err("out_of_service", r#"{"id":"x","by":"a"}"#).contains("not \"id\""));
        let (rid, r) = parse(
            "ack",
            br#"{"request_id":"r-1","by":"a","nope":1}"#,
            CAP,
            NOW,
        );
        assert_eq!(
            rid,
            Some(serde_json::json!("r-1")),
            "the id comes back on a refusal"
        );
        assert!(r.is_err());
        let big = format!(r#"{{"by":"{}"}}"#, "x".repeat(5000));
        assert!(err("ack", &big).contains("larger than"));
        // Control characters never reach events or logs.
        let r = p("ack", "{\"id\":\"a\",\"by\":\"eve\\r\\nX-Injected: 1\"}").expect("ok");
        assert_eq!(r.by, "eveX-Injected: 1");
    }
}
