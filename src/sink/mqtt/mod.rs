//! MQTT sink (rumqttc, MQTT 3.1.1): alerts, gateway status and the AWS IoT Device Shadow.
//!
//! Topics (design.md §2):
//! * `{prefix}/{gateway}/alerts/{sensor}/{alarm}` — QoS 1, retained while the alarm is active (`alarm`: `high`,
//!   `low`, `fault`, `offline`, `overflow`); its clear publishes an empty retained message, which removes it;
//! * `{prefix}/{gateway}/events` — QoS 1: every alert transition in order;
//! * `{prefix}/{gateway}/status` — retained `{"state":"online"|"offline",…}`; `offline` is also the will.
//!
//! Delivery: alert events are read from the store after the sink's cursor; the cursor advances only when the
//! broker acknowledged (PUBACK) both publishes of an event and of every earlier one. The store is the source of
//! truth, not the client: after any connection loss the client is rebuilt and everything unacknowledged is
//! published again from the store (at-least-once, in order). Publishing is paced by `max_inflight`.
//!
//! Device shadow (classic or named): subscribes to `update/accepted|rejected|delta` and `get/accepted|rejected`
//! before publishing, sends `get` after each connect, reports active alerts, latest sensor values and gateway
//! health at most every `min_interval` and only when changed; offline periods coalesce naturally (only the
//! newest state is kept). Messages with a lower `version` than seen are dropped; on `409` it re-gets and retries;
//! `desired` state is logged and reported back as not applied; the document is kept under 8 KB by trimming sensors
//! (never alerts); at most 10 shadow requests are in flight.

mod commands;
mod feed;
mod net;
mod session;
pub mod shadow;
mod subscriptions;
pub mod telemetry;

pub use feed::AlertFeed;
pub use net::client;

use crate::config::{resolve_secret, Config, MqttConfig};
use crate::model::{Alert, AlertType, Direction, Timestamp};
use crate::sink::SetupError;
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use shadow::SHADOW_MAX_INFLIGHT;
use std::sync::Arc;
use std::time::Duration;

/// Host and port from `mqtt://host:port` / `mqtts://host:port`.
pub fn parse_url(url: &str) -> Result<(bool, String, u16), SetupError> {
    parse_url_text(url).map_err(SetupError::Url)
}

fn parse_url_text(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(format!(
            "{url:?}: expected mqtt://host:port or mqtts://host:port"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let default = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        let end = stripped
            .find(']')
            .ok_or_else(|| format!("{url:?}: unterminated IPv6 address"))?;
        let host = &stripped[..end];
        let port = stripped[end + 1..]
            .strip_prefix(':')
            .map(|p| p.parse::<u16>())
            .transpose();
        (
            host.to_string(),
            port.map_err(|e| format!("{url:?}: bad port: {e}"))?
                .unwrap_or(default),
        )
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|e| format!("{url:?}: bad port: {e}"))?,
            ),
            None => (rest.to_string(), default),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?}: missing host"));
    }
    Ok((tls, host, port))
}

/// Topic names of one gateway.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `{prefix}/{gateway}`
    pub base: String,
}

impl Topics {
    /// For `prefix` and gateway id.
    pub fn new(prefix: &str, gateway: &str) -> Self {
        Topics {
            base: format!("{}/{gateway}", prefix.trim_end_matches('/')),
        }
    }
    /// Retained topic of one alarm: `alerts/{sensor}/{alarm}`, `alarm` being `high`, `low`, `fault`, `offline`,
    /// `overflow`, `rate_high`, `rate_low`, `deviation`, `suppressed`, `chattering` or `flood`. One topic per alarm, so clearing one alarm never hides another active on the same sensor.
    pub fn alert(&self, a: &Alert) -> String {
        let alarm = match (a.kind, a.direction) {
            (AlertType::Alert, Some(Direction::Low)) => "low",
            (AlertType::Alert, _) => "high",
            (AlertType::SensorFault, _) => "fault",
            (AlertType::SensorOffline, _) => "offline",
            (AlertType::BufferOverflow, _) => "overflow",
            (AlertType::OutOfService, _) => "out_of_service",
            (AlertType::ConfigChange, _) => "config",
            (AlertType::DeadLetter, _) => "dead_letter",
            (AlertType::RateOfChange, Some(Direction::Low)) => "rate_low",
            (AlertType::RateOfChange, _) => "rate_high",
            (AlertType::Deviation, _) => "deviation",
            (AlertType::SuppressedByState, _) => "suppressed",
            (AlertType::Chattering, _) => "chattering",
            (AlertType::AlarmFlood, _) => "flood",
        };
        format!("{}/alerts/{}/{alarm}", self.base, a.sensor)
    }
    /// The filter that matches every retained alarm of this gateway.
    pub fn alerts_all(&self) -> String {
        format!("{}/alerts/#", self.base)
    }
    /// Ordered event feed.
    pub fn events(&self) -> String {
        format!("{}/events", self.base)
    }
    /// Retained alarm KPIs.
    pub fn kpi(&self) -> String {
        format!("{}/alarms/kpi", self.base)
    }
    /// Retained status.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }
}

fn status_payload(cfg: &Config, online: bool) -> String {
    serde_json::json!({
        "state": if online { "online" } else { "offline" },
        "device": cfg.gateway.id,
        "location": cfg.gateway.location,
        "version": env!("CARGO_PKG_VERSION"),
        "ts": Timestamp::now().rfc3339(),
    })
    .to_string()
}

/// Options of the alert connection (`telemetry` false: client id, status will) or of the telemetry connection
/// (client id `…-telemetry`, no will: the alert connection owns the gateway's status).
fn options(m: &MqttConfig, cfg: &Config, telemetry: bool) -> Result<MqttOptions, SetupError> {
    let (tls, host, port) = parse_url(&m.url)?;
    let mut client_id = m
        .client_id
        .clone()
        .unwrap_or_else(|| cfg.gateway.id.clone());
    if telemetry {
        client_id.push_str("-telemetry");
    }
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(m.keep_alive.0.max(Duration::from_secs(5)));
    o.set_clean_session(!m.persistent_session);
    o.set_inflight(
        m.max_inflight
            .saturating_mul(2)
            .max(SHADOW_MAX_INFLIGHT as u16 + 4),
    );
    // Incoming: large enough that an oversized retained message on a subscribed topic (hostile or misconfigured
    // peer) is received and dropped by the shadow (≤ 64 kB handled) instead of breaking the connection in a loop.
    // Outgoing: what the broker takes; nothing larger is handed to the client (session::deliver).
    o.set_max_packet_size(4 << 20, m.max_message_size.0 as usize);
    let topics = Topics::new(&m.topic_prefix, &cfg.gateway.id);
    if !telemetry {
        o.set_last_will(LastWill::new(
            topics.status(),
            status_payload(cfg, false),
            QoS::AtLeastOnce,
            true,
        ));
    }
    let password = resolve_secret(
        &m.password,
        &m.password_file,
        &m.password_env,
        &m.password_credential,
    )
    .map_err(SetupError::Secret)?;
    if let Some(u) = &m.username {
        o.set_credentials(u.clone(), password.unwrap_or_default());
    }
    if tls {
        let c = crate::tls::client_config(
            m.ca_file.as_deref(),
            m.cert_file.as_deref(),
            m.key_file.as_deref(),
            &m.alpn,
        )?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(c),
        )));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884").ok(),
            Some((false, "127.0.0.1".into(), 1884))
        );
        assert_eq!(
            parse_url("mqtts://broker.example").ok(),
            Some((true, "broker.example".into(), 8883))
        );
        assert_eq!(
            parse_url("mqtt://[::1]:1883").ok(),
            Some((false, "::1".into(), 1883))
        );
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("mqtt://:1").is_err());
    }
}
