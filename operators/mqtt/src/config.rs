//! Typed configuration of the telemetry engine ([`MqttConfig`]), its validation, the topic
//! names it implies ([`Topics`]) and the TLS client setup ([`tls_client_config`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigProblem, MqttError};

/// Configuration of the MQTT telemetry engine (YAML/JSON, unknown keys rejected).
///
/// Every field has a default (see [`MqttConfig::default`] and the crate README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or IP address (default `127.0.0.1`). With TLS it is also the name
    /// checked against the server certificate.
    pub host: String,
    /// Broker TCP port (default `1883`; use `8883` for TLS).
    pub port: u16,
    /// MQTT client id (default empty: `forgeline-{device}`).
    pub client_id: String,
    /// Keep-alive interval in seconds, 1..=65535 (default 30): a dead link is noticed, and the
    /// Last Will published by the broker, within 1.5 x this.
    pub keepalive_s: u16,
    /// Factory name, a topic level (default `factory`).
    pub factory: String,
    /// Line name, a topic level (default `line`).
    pub line: String,
    /// Edge device name, a topic level of the status topic (default `edge`).
    pub device: String,
    /// TLS settings (default none: plain TCP).
    pub tls: Option<TlsConfig>,
    /// User name (default none).
    pub username: Option<String>,
    /// Password, only with `username` (default none).
    pub password: Option<String>,
    /// Durable queue file (redb; default `out/mqtt-queue.redb`). Its directory must exist.
    pub queue_path: PathBuf,
    /// Cap on the queued bytes (payload + topic + 64 B per entry; default 64 MiB, at least
    /// 64 KiB). When full: scores are dropped first, then health, alerts last.
    pub disk_cap_bytes: u64,
    /// Publish scores at all (default `false`).
    pub publish_scores: bool,
    /// Publish one score in `n` (default 1: every score).
    pub score_sample_every: u32,
    /// At most this many scores wait in the queue; more are dropped (counted) so scores never
    /// crowd out alerts (default 1000).
    pub max_score_backlog: u64,
    /// At most this many QoS 1 publishes awaiting PUBACK (default 32, 1..=1000).
    pub inflight: u16,
    /// First reconnect delay, ms, doubling up to `reconnect_max_ms` (default 200).
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, ms (default 5000).
    pub reconnect_max_ms: u64,
    /// TCP/TLS connect + CONNACK timeout, s (default 5).
    pub connect_timeout_s: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: String::new(),
            keepalive_s: 30,
            factory: "factory".into(),
            line: "line".into(),
            device: "edge".into(),
            tls: None,
            username: None,
            password: None,
            queue_path: PathBuf::from("out/mqtt-queue.redb"),
            disk_cap_bytes: 64 * 1024 * 1024,
            publish_scores: false,
            score_sample_every: 1,
            max_score_backlog: 1000,
            inflight: 32,
            reconnect_min_ms: 200,
            reconnect_max_ms: 5000,
            connect_timeout_s: 5,
        }
    }
}

/// TLS settings: server verification against a CA, optional client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) that signed the broker's certificate (required).
    pub ca_file: PathBuf,
    /// PEM client certificate chain, for brokers that require client certificates
    /// (default none; give `client_key_file` with it).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file` (default none).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// The smallest accepted `disk_cap_bytes`.
pub const MIN_DISK_CAP_BYTES: u64 = 64 * 1024;

impl MqttConfig {
    /// Parses YAML and validates; reports every problem at once.
    pub fn from_yaml(text: &str) -> Result<Self, MqttError> {
        let config: Self = serde_yaml::from_str(text).map_err(|e| {
            MqttError::Config(vec![ConfigProblem {
                field: "<document>",
                value: String::new(),
                problem: e.to_string(),
            }])
        })?;
        config.check()?;
        Ok(config)
    }

    /// The client id actually used (`client_id`, or `forgeline-{device}` when empty).
    pub fn effective_client_id(&self) -> String {
        if self.client_id.is_empty() {
            format!("forgeline-{}", self.device)
        } else {
            self.client_id.clone()
        }
    }

    /// Every problem in the configuration (empty when valid).
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut add = |field, value: String, problem: &str| {
            problems.push(ConfigProblem {
                field,
                value,
                problem: problem.to_owned(),
            });
        };
        for (field, value) in [
            ("factory", &self.factory),
            ("line", &self.line),
            ("device", &self.device),
        ] {
            if value.is_empty() || !is_topic_level(value) {
                add(
                    field,
                    format!("{value:?}"),
                    "must be a non-empty MQTT topic level: no `/`, `+`, `#` or NUL",
                );
            }
        }
        if self.host.trim().is_empty() {
            add(
                "host",
                format!("{:?}", self.host),
                "must name the broker host",
            );
        }
        if self.port == 0 {
            add("port", "0".into(), "must be a TCP port 1..=65535");
        }
        if self.keepalive_s == 0 {
            add("keepalive_s", "0".into(), "must be at least 1 s");
        }
        if self.disk_cap_bytes < MIN_DISK_CAP_BYTES {
            add(
                "disk_cap_bytes",
                self.disk_cap_bytes.to_string(),
                "must be at least 65536 (64 KiB)",
            );
        }
        if self.score_sample_every == 0 {
            add(
                "score_sample_every",
                "0".into(),
                "must be at least 1 (1 = publish every score)",
            );
        }
        if self.inflight == 0 || self.inflight > 1000 {
            add("inflight", self.inflight.to_string(), "must be 1..=1000");
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            add(
                "reconnect_min_ms",
                self.reconnect_min_ms.to_string(),
                "must be at least 1 and at most reconnect_max_ms",
            );
        }
        if self.connect_timeout_s == 0 {
            add("connect_timeout_s", "0".into(), "must be at least 1 s");
        }
        if self.password.is_some() && self.username.is_none() {
            add(
                "password",
                "<set>".into(),
                "a password needs a `username` as well",
            );
        }
        if self.queue_path.as_os_str().is_empty() {
            add("queue_path", "\"\"".into(), "must name the queue file");
        }
        if let Some(tls) = &self.tls {
            match (&tls.client_cert_file, &tls.client_key_file) {
                (Some(_), None) => add(
                    "tls.client_key_file",
                    "<none>".into(),
                    "a client certificate needs its private key as well",
                ),
                (None, Some(_)) => add(
                    "tls.client_cert_file",
                    "<none>".into(),
                    "a client key needs its certificate as well",
                ),
                _ => {}
            }
        }
        problems
    }

    /// [`Self::validate`] as a `Result`.
    pub fn check(&self) -> Result<(), MqttError> {
        let problems = self.validate();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(MqttError::Config(problems))
        }
    }
}

/// True when `s` can be one MQTT topic level (no `/`, `+`, `#`, NUL).
pub fn is_topic_level(s: &str) -> bool {
    !s.contains(['/', '+', '#', '\0'])
}

/// `s` made into one topic level: `/`, `+`, `#`, NUL become `_`; empty becomes `_`.
pub fn topic_level(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    s.chars()
        .map(|c| {
            if matches!(c, '/' | '+' | '#' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The topic names of one line and edge device.
///
/// | topic | QoS | retained |
/// |---|---|---|
/// | `factory/{factory}/line/{line}/asset/{asset}/alerts` | 1 | no |
/// | `factory/{factory}/line/{line}/asset/{asset}/scores` | 0 | no |
/// | `factory/{factory}/line/{line}/asset/{asset}/health` | 1 | no |
/// | `factory/{factory}/edge/{device}/status` | 1 | yes (`online`; Last Will `offline`) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    line_prefix: String,
    status: String,
}

impl Topics {
    /// Topics for `config`'s factory, line and device.
    pub fn new(config: &MqttConfig) -> Self {
        let factory = topic_level(&config.factory);
        Self {
            line_prefix: format!("factory/{factory}/line/{}", topic_level(&config.line)),
            status: format!(
                "factory/{factory}/edge/{}/status",
                topic_level(&config.device)
            ),
        }
    }

    /// Alerts of `asset` (QoS 1).
    pub fn alerts(&self, asset: &str) -> String {
        format!("{}/asset/{}/alerts", self.line_prefix, topic_level(asset))
    }

    /// Scores of `asset` (QoS 0).
    pub fn scores(&self, asset: &str) -> String {
        format!("{}/asset/{}/scores", self.line_prefix, topic_level(asset))
    }

    /// Health events of `asset` (QoS 1).
    pub fn health(&self, asset: &str) -> String {
        format!("{}/asset/{}/health", self.line_prefix, topic_level(asset))
    }

    /// The device's retained status topic (`online` / Last Will `offline`).
    pub fn status(&self) -> &str {
        &self.status
    }
}

/// The rustls client configuration for `tls` (ring provider), reading the PEM files.
pub fn tls_client_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, MqttError> {
    let tls_err = |field, path: &Path, reason: String| MqttError::Tls {
        field,
        path: path.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas = read_certs(&tls.ca_file).map_err(|r| tls_err("tls.ca_file", &tls.ca_file, r))?;
    for ca in cas {
        roots.add(ca).map_err(|e| {
            tls_err(
                "tls.ca_file",
                &tls.ca_file,
                format!("not a usable CA certificate: {e}"),
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("tls", &tls.ca_file, e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain =
                read_certs(cert_file).map_err(|r| tls_err("tls.client_cert_file", cert_file, r))?;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                tls_err(
                    "tls.client_key_file",
                    key_file,
                    format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                tls_err(
                    "tls.client_key_file",
                    key_file,
                    format!("key does not fit the client certificate: {e}"),
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// All certificates of a PEM file; fails when there is none.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read PEM certificates: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no `BEGIN CERTIFICATE` block found; expected PEM certificate(s)".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = MqttConfig::default();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.port, 1883);
        assert_eq!(c.effective_client_id(), "forgeline-edge");
    }

    #[test]
    fn yaml_with_unknown_key_is_rejected_naming_it() {
        let err = MqttConfig::from_yaml("factory: f1\nbroker_hots: x\n").unwrap_err();
        assert!(err.to_string().contains("broker_hots"), "{err}");
    }

    #[test]
    fn yaml_snippet_parses() {
        let c = MqttConfig::from_yaml(
            "host: broker.plant\nport: 8883\nfactory: f1\nline: press-line-2\ndevice: edge-07\n\
             tls: {ca_file: /etc/ca.pem, client_cert_file: c.pem, client_key_file: k.pem}\n\
             publish_scores: true\nscore_sample_every: 10\n",
        )
        .unwrap();
        assert_eq!(c.port, 8883);
        assert_eq!(c.score_sample_every, 10);
        assert_eq!(Topics::new(&c).status(), "factory/f1/edge/edge-07/status");
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let c = MqttConfig {
            factory: "a/b".into(),
            line: String::new(),
            port: 0,
            score_sample_every: 0,
            disk_cap_bytes: 10,
            password: Some("x".into()),
            tls: Some(TlsConfig {
                ca_file: "ca.pem".into(),
                client_cert_file: Some("c.pem".into()),
                client_key_file: None,
            }),
            ..MqttConfig::default()
        };
        let fields: Vec<_> = c.validate().iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "factory",
                "line",
                "port",
                "disk_cap_bytes",
                "score_sample_every",
                "password",
                "tls.client_key_file"
            ]
        );
        let msg = c.check().unwrap_err().to_string();
        assert!(
            msg.contains("7 problem(s)") && msg.contains("\"a/b\""),
            "{msg}"
        );
    }

    #[test]
    fn topics_follow_the_plant_layout() {
        let c = MqttConfig {
            factory: "f1".into(),
            line: "l2".into(),
            ..MqttConfig::default()
        };
        let t = Topics::new(&c);
        assert_eq!(
            t.alerts("press-07"),
            "factory/f1/line/l2/asset/press-07/alerts"
        );
        assert_eq!(
            t.scores("press-07"),
            "factory/f1/line/l2/asset/press-07/scores"
        );
        assert_eq!(t.health("a/b+#"), "factory/f1/line/l2/asset/a_b__/health");
    }

    #[test]
    fn missing_ca_file_names_field_and_path() {
        let tls = TlsConfig {
            ca_file: "/nonexistent/ca.pem".into(),
            client_cert_file: None,
            client_key_file: None,
        };
        let err = tls_client_config(&tls).unwrap_err().to_string();
        assert!(
            err.contains("tls.ca_file") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn topic_level_is_always_a_valid_single_level(s in ".*") {
            let level = topic_level(&s);
            prop_assert!(!level.is_empty());
            prop_assert!(is_topic_level(&level));
            if is_topic_level(&s) && !s.is_empty() {
                prop_assert_eq!(level, s);
            }
        }
    }
}
