//! `[email]`: critical alerts by mail, in digests, with routes. See `config/watchpost.toml` for every key.

use super::{Dur, Issue, KeyPath};
use crate::model::Severity;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[email]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host:587` (STARTTLS, required) or `smtps://host:465` (implicit TLS).
    pub url: String,
    /// `starttls`, `implicit` or `none` (plain text: only for a relay on the same host or LAN). Default: from the
    /// URL scheme.
    pub tls: Option<TlsMode>,
    /// Login name for SMTP AUTH (PLAIN or LOGIN, only over TLS unless `tls = "none"`).
    pub username: Option<String>,
    /// Password inline (prefer `password_file`). Env: `WATCHPOST__EMAIL__PASSWORD`.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// Password from a file.
    pub password_file: Option<PathBuf>,
    /// Password from an environment variable.
    pub password_env: Option<String>,
    /// Password from a systemd credential (`LoadCredential=`).
    pub password_credential: Option<String>,
    /// CA certificate (PEM) to trust instead of the system's (a private relay).
    pub ca_file: Option<PathBuf>,
    /// Sender, e.g. `"watchpost press-line-3 <gw3@plant.example>"`.
    pub from: String,
    /// Recipients of the default route (may be empty when `[[email.route]]`s are given).
    #[serde(default)]
    pub to: Vec<String>,
    /// Reply-To, e.g. the shift supervisor's list.
    pub reply_to: Option<String>,
    /// Least severity mailed by the default route.
    #[serde(default = "default_min_severity")]
    pub min_severity: MinSeverity,
    /// Only these sensors (exact ids, or a prefix ending in `*`); empty: all.
    #[serde(default)]
    pub sensors: Vec<String>,
    /// Never these sensors (exact ids, or a prefix ending in `*`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Alerts within this window after the first one go into one mail.
    #[serde(default = "default_digest")]
    pub digest_window: Dur,
    /// Most mails per hour per route; alerts beyond are folded into the next mail.
    #[serde(default = "default_per_hour")]
    pub max_per_hour: u32,
    /// Connect and per-command timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// More recipient lists, each with its own filter, cursor and digest.
    #[serde(default)]
    pub route: Vec<EmailRoute>,
}

/// `[[email.route]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EmailRoute {
    /// Route name (cursor `email.{name}`, metrics label).
    pub name: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Least severity mailed.
    #[serde(default = "default_min_severity")]
    pub min_severity: MinSeverity,
    /// Only these sensors; empty: all.
    #[serde(default)]
    pub sensors: Vec<String>,
    /// Never these sensors.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS; refused when the server does not offer it.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// No encryption (a local relay only).
    None,
}

/// A least severity (`warning` or `critical`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum MinSeverity {
    /// WARNING and CRITICAL.
    #[serde(alias = "WARNING")]
    Warning,
    /// CRITICAL only.
    #[serde(alias = "CRITICAL")]
    Critical,
}

impl MinSeverity {
    /// As the alert model's severity.
    pub fn severity(self) -> Severity {
        match self {
            MinSeverity::Warning => Severity::Warning,
            MinSeverity::Critical => Severity::Critical,
        }
    }
}

fn default_min_severity() -> MinSeverity {
    MinSeverity::Critical
}
fn default_digest() -> Dur {
    Dur(Duration::from_secs(120))
}
fn default_per_hour() -> u32 {
    20
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}

/// Where the server is and how to talk to it, from `url` and `tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEndpoint {
    /// Host name or address (also the name the certificate must carry).
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
}

impl EmailConfig {
    /// Host, port and TLS mode, or what is wrong with `url`/`tls`.
    pub fn endpoint(&self) -> Result<SmtpEndpoint, String> {
        let (scheme, rest) = self.url.split_once("://").ok_or_else(|| {
            format!(
                "{:?} must look like smtp://host:587 or smtps://host:465",
                self.url
            )
        })?;
        let scheme_tls = match scheme {
            "smtp" => TlsMode::Starttls,
            "smtps" => TlsMode::Implicit,
            other => {
                return Err(format!(
                    "unknown scheme {other:?}: use smtp:// (STARTTLS) or smtps:// (implicit TLS)"
                ))
            }
        };
        let tls = self.tls.unwrap_or(scheme_tls);
        if scheme == "smtps" && tls != TlsMode::Implicit {
            return Err("smtps:// is implicit TLS; drop `tls` or use smtp://".into());
        }
        let authority = rest.trim_end_matches('/');
        if authority.contains(['/', '?', '#', '@']) || authority.is_empty() {
            return Err(format!(
                "{:?}: give only scheme, host and port (credentials go in `username`/`password_file`)",
                self.url
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?;
                (h, port)
            }
            _ => (authority, if tls == TlsMode::Implicit { 465 } else { 587 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{:?} has no host", self.url));
        }
        if let Some(why) = super::words::non_ascii_host(&self.url) {
            return Err(why);
        }
        Ok(SmtpEndpoint {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// Checks serde cannot express: URL and TLS mode, addresses, routes, bounds.
pub(crate) fn validate(e: &EmailConfig, issues: &mut Vec<Issue>) {
    let p = KeyPath::parse;
    if let Err(m) = e.endpoint() {
        issues.push(Issue::new(p("email.url"), m));
    }
    let addr = |path: KeyPath, s: &str, issues: &mut Vec<Issue>| {
        if let Err(m) = check_mailbox(s) {
            issues.push(Issue::new(path, m));
        }
    };
    addr(p("email.from"), &e.from, issues);
    if let Some(r) = &e.reply_to {
        addr(p("email.reply_to"), r, issues);
    }
    for (i, t) in e.to.iter().enumerate() {
        addr(p(&format!("email.to[{i}]")), t, issues);
    }
    if e.to.is_empty() && e.route.is_empty() {
        issues.push(Issue::new(
            p("email.to"),
            "no recipients: give `to = [\"…\"]` or at least one [[email.route]]",
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, r) in e.route.iter().enumerate() {
        let at = |k: &str| p(&format!("email.route[{i}].{k}"));
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            issues.push(Issue::new(
                at("name"),
                "must be non-empty and use only letters, digits, '-' and '_' (it names the route's cursor)",
            ));
        } else if !names.insert(r.name.as_str()) {
            issues.push(Issue::new(
                at("name"),
                format!("route {:?} is given twice", r.name),
            ));
        }
        if r.to.is_empty() {
            issues.push(Issue::new(at("to"), "needs at least one recipient"));
        }
        for (j, t) in r.to.iter().enumerate() {
            addr(at(&format!("to[{j}]")), t, issues);
        }
    }
    if e.max_per_hour == 0 {
        issues.push(Issue::new(
            p("email.max_per_hour"),
            "must be at least 1 (alerts beyond the cap are folded into the next mail)",
        ));
    }
    if e.digest_window.0 > Duration::from_secs(86_400) {
        issues.push(Issue::new(p("email.digest_window"), "must be at most 1d"));
    }
    if e.timeout.0.is_zero() || e.timeout.0 > Duration::from_secs(600) {
        issues.push(Issue::new(
            p("email.timeout"),
            "must be greater than zero and at most 10m",
        ));
    }
    let secrets = [
        e.password.is_some(),
        e.password_file.is_some(),
        e.password_env.is_some(),
        e.password_credential.is_some(),
    ];
    if secrets.iter().filter(|s| **s).count() > 1 {
        issues.push(Issue::new(
            p("email.password"),
            "give the password one way: password, password_file, password_env or password_credential",
        ));
    }
    if secrets.iter().any(|s| *s) && e.username.is_none() {
        issues.push(Issue::new(
            p("email.username"),
            "a password is given but no username",
        ));
    }
}

/// `"Name <user@host>"` or `user@host`, without characters that could break a header.
pub fn check_mailbox(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{s:?} contains control characters"));
    }
    #[cfg(feature = "email")]
    {
        s.parse::<lettre::message::Mailbox>()
            .map(|_| ())
            .map_err(|e| format!("{s:?} is not a mail address ({e}); write e.g. \"ops@plant.example\" or \"Ops <ops@plant.example>\""))
    }
    #[cfg(not(feature = "email"))]
    {
        if s.contains('@') {
            Ok(())
        } else {
            Err(format!("{s:?} is not a mail address"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, tls: Option<TlsMode>) -> EmailConfig {
        let mut t: EmailConfig = toml::from_str(&format!(
            "url = {url:?}\nfrom = \"gw@example.test\"\nto = [\"ops@example.test\"]"
        ))
        .expect("parse");
        t.tls = tls;
        t
    }

    #[test]
    fn endpoints() {
        let e = |u, t| cfg(u, t).endpoint();
        assert_eq!(
            e("smtp://mail.example:587", None),
            Ok(SmtpEndpoint {
                host: "mail.example".into(),
                port: 587,
                tls: TlsMode::Starttls
            })
        );
        assert_eq!(
            e("smtps://mail.example", None),
            Ok(SmtpEndpoint {
                host: "mail.example".into(),
                port: 465,
                tls: TlsMode::Implicit
            })
        );
        assert_eq!(
            e("smtp://127.0.0.1:25", Some(TlsMode::None)),
            Ok(SmtpEndpoint {
                host: "127.0.0.1".into(),
                port: 25,
                tls: TlsMode::None
            })
        );
        assert_eq!(
            e("smtp://[::1]:2525", Some(TlsMode::None)).map(|x| (x.host, x.port)),
            Ok(("::1".into(), 2525))
        );
        assert!(e("smtps://mail.example", Some(TlsMode::Starttls)).is_err());
        assert!(e("http://mail.example", None).is_err());
        assert!(e("smtp://user:pw@mail.example", None).is_err());
        assert!(e("smtp://mail.example:0", None).is_err());
        assert!(e("smtp://mail.example:99999", None).is_err());
    }

    #[test]
    fn mailboxes() {
        assert!(check_mailbox("ops@plant.example").is_ok());
        assert!(check_mailbox("Ops Team <ops@plant.example>").is_ok());
        assert!(check_mailbox("ops").is_err());
        assert!(check_mailbox("ops@plant.example\r\nBcc: x@evil.example").is_err());
    }
}
