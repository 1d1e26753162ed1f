//! Every kind of sink in one table: the names a configuration gives it (its cursors in the store), the stream it
//! reads, what its configuration is (a reload restarts it when that changes) and how it is started on the runner.
//! `consumers`, the reload fingerprints and the spawning all read this table, so they cannot disagree.
//!
//! Adding a sink: a module with a type implementing [`super::Sink`] and a constructor from a [`SinkContext`], its
//! config struct, and one entry in [`KINDS`].

use super::context::{Open, SinkContext};
use super::runner;
use crate::config::Config;
use crate::store::{Consumer, Stream};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// Start the sink `open` makes on the runner.
#[allow(dead_code)] // unused when no sink feature is compiled in
fn start<S: super::Sink>(cx: &SinkContext, open: Open<S>, tracker: &TaskTracker) -> JoinHandle<()> {
    tracker.spawn(runner::run(open, cx.clone()))
}

/// One kind of sink.
pub struct SinkKind {
    /// The sink names `cfg` configures (none: not configured; email gives one per route).
    pub names: fn(&Config) -> Vec<&'static str>,
    /// The stream it reads.
    pub stream: Stream,
    /// What its configuration is, secrets included, for deciding whether a reload restarts it.
    pub fingerprint: fn(&Config) -> String,
    /// Start the sink `cx.name` (one of `names`) on `tracker`.
    pub spawn: fn(&SinkContext, &TaskTracker) -> Option<JoinHandle<()>>,
}

/// Every sink compiled into this build.
pub const KINDS: &[SinkKind] = &[
    #[cfg(feature = "influxdb")]
    SinkKind {
        names: |c| named(c.influxdb.is_some(), "influxdb"),
        stream: Stream::Readings,
        fingerprint: |c| {
            let Some(i) = &c.influxdb else {
                return String::new();
            };
            let tags: Vec<_> = c.sensor.iter().map(|s| (&s.id, &s.tags)).collect();
            let secrets = secrets_digest(
                &[&i.token],
                &[&i.token_file, &i.ca_file],
                &[&i.token_credential],
            );
            serde_json::to_string(&(i, &c.gateway.id, &c.gateway.location, &tags, secrets))
                .unwrap_or_default()
        },
        spawn: |cx, t| Some(start(cx, super::influxdb::InfluxSink::open, t)),
    },
    #[cfg(feature = "mqtt")]
    SinkKind {
        names: |c| named(c.mqtt.is_some(), "mqtt"),
        stream: Stream::Events,
        fingerprint: |c| {
            let Some(q) = &c.mqtt else {
                return String::new();
            };
            serde_json::to_string(&(q, &c.gateway.id, &c.gateway.location, mqtt_secrets(q)))
                .unwrap_or_default()
        },
        spawn: |cx, t| Some(start(cx, super::mqtt::AlertFeed::open, t)),
    },
    #[cfg(feature = "mqtt")]
    SinkKind {
        names: |c| {
            named(
                c.mqtt.as_ref().is_some_and(|m| m.telemetry.is_some()),
                "telemetry",
            )
        },
        stream: Stream::Readings,
        fingerprint: |c| {
            let Some(q) = &c.mqtt else {
                return String::new();
            };
            serde_json::to_string(&(q, &c.gateway.id, mqtt_secrets(q))).unwrap_or_default()
        },
        spawn: |cx, t| Some(start(cx, super::mqtt::telemetry::Telemetry::open, t)),
    },
    #[cfg(feature = "email")]
    SinkKind {
        names: |c| {
            c.email
                .as_ref()
                .map(super::email::route_names)
                .unwrap_or_default()
        },
        stream: Stream::Events,
        fingerprint: |c| {
            let Some(e) = &c.email else {
                return String::new();
            };
            let secrets = secrets_digest(
                &[&e.password],
                &[&e.password_file, &e.ca_file],
                &[&e.password_credential],
            );
            serde_json::to_string(&(e, &c.gateway.id, &c.gateway.location, secrets))
                .unwrap_or_default()
        },
        spawn: |cx, t| Some(start(cx, super::email::EmailSink::open, t)),
    },
    #[cfg(feature = "sparkplug")]
    SinkKind {
        names: |c| named(c.sparkplug.is_some(), "sparkplug"),
        stream: Stream::Readings,
        fingerprint: |c| {
            let Some(s) = &c.sparkplug else {
                return String::new();
            };
            // The births describe every sensor: a changed sensor list restarts the session (and births again).
            let sensors: Vec<_> = c
                .sensor
                .iter()
                .map(|s| (&s.id, &s.source, &s.unit))
                .collect();
            let secrets = secrets_digest(&[&s.password], &[&s.password_file, &s.ca_file], &[]);
            serde_json::to_string(&(s, &c.gateway.id, &c.gateway.location, sensors, secrets))
                .unwrap_or_default()
        },
        spawn: |cx, t| Some(start(cx, super::sparkplug::Sparkplug::open, t)),
    },
    // Sections for sinks this build leaves out: they stay consumers (nothing they would deliver is pruned) and
    // show as failed.
    #[cfg(not(feature = "influxdb"))]
    SinkKind {
        names: |c| named(c.influxdb.is_some(), "influxdb"),
        stream: Stream::Readings,
        fingerprint: |_| String::new(),
        spawn: not_compiled,
    },
    #[cfg(not(feature = "mqtt"))]
    SinkKind {
        names: |c| named(c.mqtt.is_some(), "mqtt"),
        stream: Stream::Events,
        fingerprint: |_| String::new(),
        spawn: not_compiled,
    },
    #[cfg(not(feature = "sparkplug"))]
    SinkKind {
        names: |c| named(c.sparkplug.is_some(), "sparkplug"),
        stream: Stream::Readings,
        fingerprint: |_| String::new(),
        spawn: not_compiled,
    },
    #[cfg(not(feature = "email"))]
    SinkKind {
        names: |c| named(c.email.is_some(), "email"),
        stream: Stream::Events,
        fingerprint: |_| String::new(),
        spawn: not_compiled,
    },
];

/// `[name]` when its section is there.
fn named(present: bool, name: &'static str) -> Vec<&'static str> {
    if present {
        vec![name]
    } else {
        Vec::new()
    }
}

/// A configured sink this build does not have.
#[allow(dead_code)] // unused when every sink is compiled in
fn not_compiled(cx: &SinkContext, _: &TaskTracker) -> Option<JoinHandle<()>> {
    let name = cx.name;
    tracing::error!(
        sink = name,
        "This sink is not compiled into this build; its data stays in the local store."
    );
    cx.metrics
        .sink(name)
        .set_state(crate::metrics::SinkState::Failed);
    None
}

/// The sinks configured in `cfg` and the stream each consumes (their cursors in the store).
pub fn consumers(cfg: &Config) -> Vec<Consumer> {
    KINDS
        .iter()
        .flat_map(|k| {
            (k.names)(cfg)
                .into_iter()
                .map(|n| (n.to_string(), k.stream))
        })
        .collect()
}

/// Every configured sink's name with its kind's fingerprint.
pub(super) fn configured(cfg: &Config) -> Vec<(&'static str, String, &'static SinkKind)> {
    KINDS
        .iter()
        .flat_map(|k| {
            let names = (k.names)(cfg);
            let fp = if names.is_empty() {
                String::new()
            } else {
                (k.fingerprint)(cfg)
            };
            names.into_iter().map(move |n| (n, fp.clone(), k))
        })
        .collect()
}

#[cfg(feature = "mqtt")]
fn mqtt_secrets(q: &crate::config::MqttConfig) -> u64 {
    secrets_digest(
        &[&q.password],
        &[&q.password_file, &q.ca_file, &q.cert_file, &q.key_file],
        &[&q.password_credential],
    )
}

/// A digest of what a sink reads at start besides its settings: inline secrets (never serialized), and the
/// contents of the secret, credential and certificate files it names (a rotated file keeps its path). A reload
/// after a rotation restarts the sink; the digest, not the secret, is kept.
#[allow(dead_code)] // unused when no sink feature is compiled in
fn secrets_digest(
    inline: &[&Option<String>],
    files: &[&Option<std::path::PathBuf>],
    credentials: &[&Option<String>],
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in inline {
        s.hash(&mut h);
    }
    let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let cred_files = credentials
        .iter()
        .map(|c| c.as_ref().zip(creds.as_ref()).map(|(c, dir)| dir.join(c)));
    for f in files.iter().map(|f| (*f).clone()).chain(cred_files) {
        f.and_then(|p| std::fs::read(p).ok()).hash(&mut h);
    }
    h.finish()
}
