//! `watchpost alerts`: a terminal viewer of a gateway's alerts on the broker (any MQTT subscriber would do).

use crate::model::Alert;
use crate::sink::mqtt::parse_url;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Options of the `watchpost alerts` viewer.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// Broker URL.
    pub broker: String,
    /// Gateway id, or all gateways.
    pub gateway: Option<String>,
    /// Topic prefix.
    pub prefix: String,
    /// TLS CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// TLS client certificate.
    pub cert_file: Option<std::path::PathBuf>,
    /// TLS client key.
    pub key_file: Option<std::path::PathBuf>,
    /// Username.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Exit after this many live events.
    pub count: Option<usize>,
    /// ANSI colours.
    pub color: bool,
}

fn colored(a: &Alert, color: bool) -> String {
    let line = format!("{} {}", a.device, a.summary());
    if !color {
        return line;
    }
    let code = match (a.state, a.severity) {
        (crate::model::AlertState::Cleared, _) => "32",
        (_, crate::model::Severity::Critical) => "1;31",
        _ => "33",
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

/// Subscribe and print alerts: the active ones (from the retained topics) first, then every transition live.
pub async fn view(o: ViewOptions) -> Result<(), String> {
    crate::install_crypto_provider();
    let (tls, host, port) = parse_url(&o.broker)?;
    let mut opts = MqttOptions::new(
        format!("watchpost-viewer-{}", fastrand::u32(..)),
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
        )?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(c),
        )));
    }
    let (client, mut ev) = AsyncClient::new(opts, 64);
    let gw = o.gateway.clone().unwrap_or_else(|| "+".into());
    let prefix = o.prefix.trim_end_matches('/');
    client
        .subscribe(format!("{prefix}/{gw}/alerts/#"), QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    client
        .subscribe(format!("{prefix}/{gw}/events"), QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
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
                        if a.state == crate::model::AlertState::Cleared {
                            active.remove(&p.topic);
                        } else {
                            active.insert(p.topic.clone(), a);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(format!("{}: {e}", o.broker)),
            }
        }
    }
}
