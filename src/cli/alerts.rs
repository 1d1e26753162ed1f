//! `watchpost alerts`: a terminal viewer of a gateway's alerts on the broker (any MQTT subscriber would do), and
//! the operator's commands (`ack`, `shelve`, `unshelve`, `out-of-service`, `in-service`) with their answers.

use crate::model::Alert;
use crate::sink::mqtt::parse_url;
use clap::{Args, Subcommand};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `watchpost alerts`.
#[derive(Debug, Args)]
pub(super) struct AlertsArgs {
    /// Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883 (default: the config's [mqtt] url, else
    /// mqtt://127.0.0.1:1883).
    #[arg(long, global = true)]
    broker: Option<String>,
    /// Only this gateway (default: the config's gateway id, else all; commands need it).
    #[arg(long, global = true)]
    gateway: Option<String>,
    /// Topic prefix (default: the config's, else watchpost).
    #[arg(long, global = true)]
    prefix: Option<String>,
    /// CA certificate (PEM) for mqtts://.
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, global = true)]
    cert_file: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
    /// Username.
    #[arg(long, global = true)]
    username: Option<String>,
    /// File holding the password (or set WATCHPOST_MQTT_PASSWORD; never on the command line, where `ps` shows it).
    #[arg(long, global = true)]
    password_file: Option<PathBuf>,
    /// Exit after this many live events.
    #[arg(long)]
    count: Option<usize>,
    /// No colours.
    #[arg(long)]
    no_color: bool,
    #[command(subcommand)]
    action: Option<Action>,
}

/// Operator commands.
#[derive(Debug, Subcommand)]
enum Action {
    /// Acknowledge an alarm (active, or returned to normal and unacknowledged).
    Ack {
        /// Alert id (`gateway:sensor:n`, as the viewer shows it).
        id: String,
        /// Who acknowledges.
        #[arg(long)]
        by: String,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Shelve an alarm or every alarm of a sensor for a while (not annunciated; announced again if still active).
    Shelve {
        /// Alert id (or use --sensor).
        #[arg(required_unless_present = "sensor", conflicts_with = "sensor")]
        id: Option<String>,
        /// Every alarm of this sensor.
        #[arg(long)]
        sensor: Option<String>,
        /// How long, e.g. 30m, 2h (at most the gateway's mqtt.commands.max_shelve).
        #[arg(long)]
        duration: String,
        /// Who shelves.
        #[arg(long)]
        by: String,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Lift a shelf.
    Unshelve {
        /// Alert id (or use --sensor).
        #[arg(required_unless_present = "sensor", conflicts_with = "sensor")]
        id: Option<String>,
        /// Every alarm of this sensor.
        #[arg(long)]
        sensor: Option<String>,
        /// Who.
        #[arg(long)]
        by: String,
    },
    /// Take a sensor out of service (its alarms clear and are not evaluated until it is back).
    OutOfService {
        /// Sensor id.
        sensor: String,
        /// Who.
        #[arg(long)]
        by: String,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Return a sensor to service.
    InService {
        /// Sensor id.
        sensor: String,
        /// Who.
        #[arg(long)]
        by: String,
    },
}

/// Options of the `watchpost alerts` viewer.
#[derive(Debug, Clone)]
pub(super) struct ViewOptions {
    /// Broker URL.
    pub broker: String,
    /// Gateway id, or all gateways.
    pub gateway: Option<String>,
    /// Topic prefix.
    pub prefix: String,
    /// TLS CA.
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate.
    pub cert_file: Option<PathBuf>,
    /// TLS client key.
    pub key_file: Option<PathBuf>,
    /// Username.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Exit after this many live events.
    pub count: Option<usize>,
    /// ANSI colours.
    pub color: bool,
}

/// The gateway's own MQTT settings, from `--config` (an error if it cannot be read) or the default config when
/// it exists and is readable (on the gateway itself): broker, gateway id, prefix, TLS files and credentials.
fn from_config(
    given: Option<&std::path::Path>,
) -> Result<Option<(crate::config::Config, crate::config::MqttConfig)>, String> {
    let path = super::config_path(given);
    let explicit = given.is_some() || std::env::var_os("WATCHPOST_CONFIG").is_some();
    if !explicit && std::fs::File::open(&path).is_err() {
        return Ok(None);
    }
    let cfg = crate::config::load(&path).map_err(|e| e.to_string())?;
    match cfg.mqtt.clone() {
        Some(m) => Ok(Some((cfg, m))),
        None if explicit => Err(format!(
            "{}: no [mqtt] section: give --broker",
            path.display()
        )),
        None => Ok(None),
    }
}

/// Run `watchpost alerts`: exit 0 (accepted / viewer done), 1 (refused or bad usage), 2 (no broker, no answer).
/// Broker, gateway id, prefix, TLS and credentials come from the gateway's config when there is one; flags
/// override.
pub(super) fn run(a: AlertsArgs, config: Option<&std::path::Path>) -> ExitCode {
    let gw = match from_config(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("watchpost alerts: {e}");
            return ExitCode::from(1);
        }
    };
    let m = gw.as_ref().map(|(_, m)| m);
    let password = match &a.password_file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(p) => Some(p.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => {
                eprintln!("watchpost alerts: --password-file {}: {e}", f.display());
                return ExitCode::from(1);
            }
        },
        None => match std::env::var("WATCHPOST_MQTT_PASSWORD").ok() {
            Some(p) => Some(p),
            None => match m.map(|m| {
                crate::config::resolve_secret(
                    &m.password,
                    &m.password_file,
                    &m.password_env,
                    &m.password_credential,
                )
            }) {
                Some(Err(e)) => {
                    eprintln!("watchpost alerts: the config's MQTT password: {e}");
                    return ExitCode::from(1);
                }
                Some(Ok(p)) => p,
                None => None,
            },
        },
    };
    let Some(rt) = crate::commission::command_runtime("alerts") else {
        return ExitCode::from(2);
    };
    let o = ViewOptions {
        broker: a
            .broker
            .or_else(|| m.map(|m| m.url.clone()))
            .unwrap_or_else(|| "mqtt://127.0.0.1:1883".into()),
        gateway: a
            .gateway
            .or_else(|| gw.as_ref().map(|(c, _)| c.gateway.id.clone())),
        prefix: a
            .prefix
            .or_else(|| m.map(|m| m.topic_prefix.clone()))
            .unwrap_or_else(|| "watchpost".into()),
        ca_file: a.ca_file.or_else(|| m.and_then(|m| m.ca_file.clone())),
        cert_file: a.cert_file.or_else(|| m.and_then(|m| m.cert_file.clone())),
        key_file: a.key_file.or_else(|| m.and_then(|m| m.key_file.clone())),
        username: a.username.or_else(|| m.and_then(|m| m.username.clone())),
        password,
        count: a.count,
        color: !a.no_color && std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let Some(action) = a.action else {
        return match rt.block_on(view(o)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("watchpost alerts: {e}");
                ExitCode::from(2)
            }
        };
    };
    let (verb, body) = match action {
        Action::Ack { id, by, note } => {
            ("ack", serde_json::json!({"id": id, "by": by, "note": note}))
        }
        Action::Shelve {
            id,
            sensor,
            duration,
            by,
            note,
        } => (
            "shelve",
            serde_json::json!({"id": id, "sensor": sensor, "duration": duration, "by": by, "note": note}),
        ),
        Action::Unshelve { id, sensor, by } => (
            "unshelve",
            serde_json::json!({"id": id, "sensor": sensor, "by": by}),
        ),
        Action::OutOfService { sensor, by, note } => (
            "out_of_service",
            serde_json::json!({"sensor": sensor, "by": by, "note": note}),
        ),
        Action::InService { sensor, by } => (
            "in_service",
            serde_json::json!({"sensor": sensor, "by": by}),
        ),
    };
    if o.gateway.is_none() {
        eprintln!("watchpost alerts {verb}: --gateway is required for commands");
        return ExitCode::from(1);
    }
    match rt.block_on(command(&o, verb, body)) {
        Ok(answer) => {
            println!("{answer}");
            if answer["status"] == "accepted" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("watchpost alerts {verb}: {e}");
            ExitCode::from(2)
        }
    }
}

fn options(o: &ViewOptions, role: &str) -> Result<MqttOptions, String> {
    crate::install_crypto_provider();
    let (tls, host, port) = parse_url(&o.broker).map_err(|e| e.to_string())?;
    let mut opts = MqttOptions::new(
        format!("watchpost-{role}-{}", fastrand::u32(..)),
        host,
        port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(256 * 1024, 256 * 1024);
    if let Some(u) = &o.username {
        opts.set_credentials(u.clone(), o.password.clone().unwrap_or_default());
    }
    if tls {
        let c = crate::tls::client_config(
            o.ca_file.as_deref(),
            o.cert_file.as_deref(),
            o.key_file.as_deref(),
            &[],
        )
        .map_err(|e| e.to_string())?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(c),
        )));
    }
    Ok(opts)
}

/// Publish one command and wait for its answer (matched by `request_id`).
async fn command(
    o: &ViewOptions,
    verb: &str,
    mut body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let base = format!(
        "{}/{}/commands",
        o.prefix.trim_end_matches('/'),
        o.gateway.as_deref().unwrap_or("+")
    );
    let rid = format!("cli-{:016x}", fastrand::u64(..));
    body["request_id"] = rid.clone().into();
    if let Some(m) = body.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    let (client, mut ev) = crate::sink::mqtt::client(options(o, "cli")?, 16);
    let status = base.trim_end_matches("/commands").to_string() + "/status";
    let publish = |client: AsyncClient| {
        let (topic, body) = (format!("{base}/{verb}"), body.to_string());
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, body)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let wait = async {
        // The gateway's retained status decides when to send: "online" (published after it subscribed to its
        // commands) → now; "offline" (restarting, or its will) → once it is back; none within a second (status
        // off) → anyway. A command sent while nobody subscribes is dropped by the broker, never answered.
        let mut sent = false;
        let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let mut seen = false;
        loop {
            let e = tokio::select! {
                e = ev.poll() => e,
                _ = async { grace.as_mut()?.await; Some(()) }, if grace.is_some() && !sent => {
                    sent = true;
                    publish(client.clone()).await?;
                    continue;
                }
            };
            match e {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let topics = [format!("{base}/response"), status.clone()]
                        .map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
                    client
                        .subscribe_many(topics)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) if !sent && !seen => {
                    grace = Some(Box::pin(tokio::time::sleep(Duration::from_secs(1))));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                        continue;
                    };
                    if p.topic == status {
                        if sent {
                            continue;
                        }
                        grace = None;
                        if v["state"] == "online" {
                            sent = true;
                            publish(client.clone()).await?;
                        } else if !seen {
                            eprintln!(
                                "watchpost alerts {verb}: the gateway is offline (since {}); the command goes out when it is back",
                                v["ts"].as_str().unwrap_or("?")
                            );
                        }
                        seen = true;
                    } else if v["request_id"] == rid.as_str() {
                        return Ok(v);
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(format!("{}: {e}", o.broker)),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .map_err(|_| {
            "no answer within 15 s (is the gateway connected, with [mqtt.commands] enabled = true?)"
                .to_string()
        })?
}

fn colored(a: &Alert, color: bool) -> String {
    let line = format!("{} {}", a.device, a.summary());
    if !color {
        return line;
    }
    let code = match (a.state, a.severity) {
        _ if !a.annunciates() && a.state != crate::model::AlertState::Deescalated => "32",
        (_, crate::model::Severity::Critical) => "1;31",
        _ => "33",
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

/// Subscribe and print alerts: the active ones (from the retained topics) first, then every transition live.
/// Reconnects when the broker drops; a broker that cannot be reached at the start is an error.
pub(super) async fn view(o: ViewOptions) -> Result<(), String> {
    let (client, mut ev) = crate::sink::mqtt::client(options(&o, "viewer")?, 64);
    let gw = o.gateway.clone().unwrap_or_else(|| "+".into());
    let prefix = o.prefix.trim_end_matches('/').to_string();
    let mut connected_once = false;
    let mut active: BTreeMap<String, Alert> = BTreeMap::new();
    let mut live = false;
    let mut seen = 0usize;
    let settle = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            _ = &mut settle, if !live => {
                live = true;
                println!("── active alerts: {} ──", active.len());
                for a in active.values() {
                    println!("{}", colored(a, o.color));
                }
                if o.count == Some(0) {
                    return Ok(());
                }
                println!("── live ──");
            }
            e = ev.poll() => match e {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if connected_once {
                        eprintln!("(reconnected to {})", o.broker);
                    }
                    connected_once = true;
                    // A clean session: subscribe again after every connect.
                    for t in [format!("{prefix}/{gw}/alerts/#"), format!("{prefix}/{gw}/events")] {
                        client.subscribe(t, QoS::AtLeastOnce).await.map_err(|e| e.to_string())?;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) if !live => {
                    // Retained messages follow the SUBACK at once; give them a moment.
                    settle.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(700));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.payload.is_empty() {
                        // An alarm cleared: its retained state was removed.
                        active.remove(&p.topic);
                        continue;
                    }
                    let Ok(a) = serde_json::from_slice::<Alert>(&p.payload) else {
                        eprintln!("(ignored a malformed message on {})", p.topic);
                        continue;
                    };
                    if p.topic.ends_with("/events") {
                        if live {
                            println!("{}", colored(&a, o.color));
                            seen += 1;
                            if o.count.is_some_and(|c| seen >= c) {
                                return Ok(());
                            }
                        }
                    } else if p.retain && !live {
                        if !a.standing() {
                            active.remove(&p.topic);
                        } else {
                            active.insert(p.topic.clone(), a);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if !connected_once => return Err(format!("{}: {e}", o.broker)),
                Err(e) => {
                    eprintln!("(broker connection lost: {e}; reconnecting)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
