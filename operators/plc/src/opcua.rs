//! OPC UA client link (async-opcua): the same signals as the Modbus register map, written as
//! typed variables to configured node ids, one Write service call per decision.
//!
//! The session's own reconnect loop is disabled: like the Modbus link, a lost connection is
//! reported to the [`crate::PlcWorker`], which reconnects with its backoff and raises
//! `plc_down` / `plc_recovered`, so both link kinds behave the same to the line.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use forgeline_schemas::{Decision, Verdict};
use opcua::client::{Client, ClientBuilder, IdentityToken, Session};
use opcua::crypto::SecurityPolicy as UaSecurityPolicy;
use opcua::types::{
    AttributeId, DataValue, EndpointDescription, MessageSecurityMode, NodeId, ReadValueId,
    StatusCode, TimestampsToReturn, Variant, WriteValue,
};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::config::{LinkConfig, SecurityMode, SecurityPolicy};
use crate::encode::{is_fail_safe, severity_code, verdict_code};
use crate::link::{Backoff, LinkError, PlcLink};

/// Parses an OPC UA node id in the text form of OPC UA Part 6 (`ns=2;s=Press.Reject`,
/// `ns=3;i=1001`, `i=2258`…); the error says why not.
pub fn parse_node_id(text: &str) -> Result<NodeId, String> {
    NodeId::from_str(text).map_err(|status| format!("not a node id: {status}"))
}

/// The value of each signal for `decision`, as the OPC UA variant the variable must hold.
/// Order: the configured `link.nodes` order with `seq` last (see [`crate::OpcUaNodes`]).
pub fn signal_value(signal: &str, decision: &Decision, reject_on: &[Verdict]) -> Option<Variant> {
    Some(match signal {
        "reject" => Variant::Boolean(reject_on.contains(&decision.verdict)),
        "verdict" => Variant::UInt16(verdict_code(decision.verdict)),
        "severity" => Variant::UInt16(severity_code(decision.severity)),
        "score" => Variant::Float(decision.score),
        "seq" => Variant::UInt64(decision.key.seq),
        "model_version" => Variant::from(decision.model_version.as_str()),
        "fail_safe" => Variant::Boolean(is_fail_safe(decision)),
        _ => return None,
    })
}

/// Statuses that mean the channel or session is gone (reconnect), as opposed to a refusal.
const CONNECTION_LOST: [StatusCode; 15] = [
    StatusCode::BadCommunicationError,
    StatusCode::BadTimeout,
    StatusCode::BadShutdown,
    StatusCode::BadServerNotConnected,
    StatusCode::BadServerHalted,
    StatusCode::BadSecureChannelIdInvalid,
    StatusCode::BadSessionIdInvalid,
    StatusCode::BadSessionClosed,
    StatusCode::BadSessionNotActivated,
    StatusCode::BadTcpInternalError,
    StatusCode::BadRequestTimeout,
    StatusCode::BadSecureChannelClosed,
    StatusCode::BadNotConnected,
    StatusCode::BadDisconnect,
    StatusCode::BadConnectionClosed,
];

fn is_connection_status(status: StatusCode) -> bool {
    CONNECTION_LOST
        .iter()
        .any(|lost| lost.sub_code() == status.sub_code())
}

/// An open session and the task polling its event loop.
struct Connected {
    session: Arc<Session>,
    event_loop: JoinHandle<StatusCode>,
}

/// An OPC UA client for one PLC (server endpoint).
pub struct OpcUaLink {
    config: LinkConfig,
    endpoint: String,
    reject_on: Vec<Verdict>,
    /// `(config key, node id)` of the decision signals, seq last.
    signals: Vec<(&'static str, NodeId)>,
    heartbeat: Option<NodeId>,
    client: Option<Client>,
    connected: Option<Connected>,
    backoff: Backoff,
    /// The PKI directory when `link.pki_dir` is not set: a private (0700), randomly named temp
    /// dir made when the client is built, removed when the link is dropped. Last field: it is
    /// dropped after the client and the session.
    default_pki: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for OpcUaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpcUaLink")
            .field("endpoint", &self.endpoint)
            .field("signals", &self.signals.len())
            .field("connected", &self.connected.is_some())
            .finish_non_exhaustive()
    }
}

impl OpcUaLink {
    /// A link (not yet connected) to `config.endpoint`. `reject_on` lists the verdicts that set
    /// the `reject` signal (`registers.reject_on`).
    ///
    /// # Errors
    /// A node id in `config.nodes` that does not parse ([`crate::PlcConfig::validate`] reports
    /// it first, naming the field).
    pub fn new(config: LinkConfig, reject_on: Vec<Verdict>) -> Result<Self, LinkError> {
        let endpoint = config.target().to_owned();
        let mut signals = Vec::new();
        let mut heartbeat = None;
        for (name, text) in config.nodes.configured() {
            let id = parse_node_id(text).map_err(|reason| LinkError::OpcUaConnection {
                endpoint: endpoint.clone(),
                operation: format!("configure `link.nodes.{name}` = {text}"),
                reason,
            })?;
            if name == "heartbeat" {
                heartbeat = Some(id);
            } else {
                signals.push((name, id));
            }
        }
        let backoff = Backoff::new(
            Duration::from_millis(config.backoff_initial_ms),
            Duration::from_millis(config.backoff_max_ms),
        );
        Ok(Self {
            config,
            endpoint,
            reject_on,
            signals,
            heartbeat,
            client: None,
            connected: None,
            backoff,
            default_pki: None,
        })
    }

    fn lost(&self, operation: impl Into<String>, reason: impl Into<String>) -> LinkError {
        LinkError::OpcUaConnection {
            endpoint: self.endpoint.clone(),
            operation: operation.into(),
            reason: reason.into(),
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    /// The PKI directory: `link.pki_dir`, or a private temp dir of this link (made on first use,
    /// removed when the link is dropped; configure `link.pki_dir` for a certificate the server
    /// trusts across restarts).
    fn pki_dir(&mut self) -> Result<PathBuf, LinkError> {
        if let Some(dir) = &self.config.pki_dir {
            return Ok(PathBuf::from(dir));
        }
        if let Some(dir) = &self.default_pki {
            return Ok(dir.path().to_path_buf());
        }
        let dir = tempfile::Builder::new()
            .prefix("forgeline-opcua-pki-")
            .tempdir()
            .map_err(|e| {
                self.lost(
                    "create a PKI directory under the temp dir (or set `link.pki_dir`)",
                    e.to_string(),
                )
            })?;
        let path = dir.path().to_path_buf();
        self.default_pki = Some(dir);
        Ok(path)
    }

    /// Builds the client once (certificates, trust, timeouts).
    fn client(&mut self) -> Result<&mut Client, LinkError> {
        if self.client.is_none() {
            let pki_dir = self.pki_dir()?;
            let secure = self.config.security_policy != SecurityPolicy::None;
            if let Some(server_cert) = &self.config.server_certificate {
                trust_server_certificate(&pki_dir, Path::new(server_cert)).map_err(|e| {
                    self.lost(
                        format!("trust `link.server_certificate` = {server_cert}"),
                        e.to_string(),
                    )
                })?;
            }
            let mut builder = ClientBuilder::new()
                .application_name("forgeline plc-output")
                .application_uri("urn:forgeline:plc-output")
                .product_uri("urn:forgeline")
                .pki_dir(&pki_dir)
                .create_sample_keypair(secure && self.config.certificate.is_none())
                .trust_server_certs(self.config.trust_server_cert)
                .verify_server_certs(!self.config.trust_server_cert)
                // The worker owns reconnects (and reports outages): the session never retries.
                .session_retry_limit(0)
                .request_timeout(self.request_timeout())
                .session_name("forgeline plc-output");
            if let (Some(cert), Some(key)) = (&self.config.certificate, &self.config.private_key) {
                builder = builder
                    .certificate_path(absolute(cert))
                    .private_key_path(absolute(key));
            }
            let client = builder.client().map_err(|errors| {
                self.lost(
                    "configure the OPC UA client (`link.certificate`, `link.pki_dir`)",
                    errors.join("; "),
                )
            })?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| LinkError::OpcUaConnection {
                endpoint: self.endpoint.clone(),
                operation: "configure the OPC UA client".into(),
                reason: "client missing".into(),
            })
    }

    fn endpoint_description(&self) -> EndpointDescription {
        let policy = match self.config.security_policy {
            SecurityPolicy::None => UaSecurityPolicy::None,
            SecurityPolicy::Basic128Rsa15 => UaSecurityPolicy::Basic128Rsa15,
            SecurityPolicy::Basic256 => UaSecurityPolicy::Basic256,
            SecurityPolicy::Basic256Sha256 => UaSecurityPolicy::Basic256Sha256,
            SecurityPolicy::Aes128Sha256RsaOaep => UaSecurityPolicy::Aes128Sha256RsaOaep,
            SecurityPolicy::Aes256Sha256RsaPss => UaSecurityPolicy::Aes256Sha256RsaPss,
        };
        let mode = match self.config.security_mode {
            SecurityMode::None => MessageSecurityMode::None,
            SecurityMode::Sign => MessageSecurityMode::Sign,
            SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
        };
        EndpointDescription::from((self.endpoint.as_str(), policy.to_uri(), mode))
    }

    fn identity(&self) -> IdentityToken {
        match (&self.config.username, &self.config.password) {
            (Some(user), Some(password)) => {
                IdentityToken::new_user_name(user.clone(), password.clone())
            }
            _ => IdentityToken::Anonymous,
        }
    }

    /// The session, when connected and its event loop still runs.
    fn session(&mut self, operation: &str) -> Result<Arc<Session>, LinkError> {
        match &self.connected {
            Some(c) if !c.event_loop.is_finished() => Ok(Arc::clone(&c.session)),
            Some(_) => {
                self.drop_session();
                Err(self.lost(
                    operation,
                    "the session ended (server closed the connection)",
                ))
            }
            None => Err(self.lost(operation, "not connected")),
        }
    }

    /// Awaits one OPC UA service call within `link.request_timeout_ms`. A lost connection, or
    /// no answer (`on_timeout` says so), drops the session so the next write reconnects; any
    /// other failure is the server refusing `operation`.
    async fn call<T>(
        &mut self,
        operation: String,
        on_timeout: String,
        request: impl std::future::Future<Output = Result<T, opcua::types::Error>>,
    ) -> Result<T, LinkError> {
        match timeout(self.request_timeout(), request).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) if is_connection_status(error.status()) => {
                self.drop_session();
                Err(self.lost(operation, error.to_string()))
            }
            Ok(Err(error)) => Err(LinkError::OpcUaRefused {
                endpoint: self.endpoint.clone(),
                operation,
                status: error.to_string(),
            }),
            Err(_) => {
                self.drop_session();
                Err(self.lost(operation, on_timeout))
            }
        }
    }

    fn drop_session(&mut self) {
        if let Some(c) = self.connected.take() {
            c.event_loop.abort();
        }
    }

    /// Writes `values` (one Write service call) and checks every node's status; reads them
    /// back with `verify_writes`.
    async fn write_values(
        &mut self,
        values: Vec<(&'static str, NodeId, Variant)>,
    ) -> Result<(), LinkError> {
        if values.is_empty() {
            return Ok(());
        }
        let operation = format!("write {} nodes", values.len());
        let session = self.session(&operation)?;
        let request: Vec<WriteValue> = values
            .iter()
            .map(|(_, node_id, value)| WriteValue {
                node_id: node_id.clone(),
                attribute_id: AttributeId::Value as u32,
                value: DataValue::value_only(value.clone()),
                ..WriteValue::default()
            })
            .collect();
        let no_response = format!(
            "no response within {} ms (`link.request_timeout_ms`)",
            self.config.request_timeout_ms
        );
        let results = self
            .call(operation, no_response, session.write(&request))
            .await?;
        for (i, (name, node_id, _)) in values.iter().enumerate() {
            let status = results
                .get(i)
                .copied()
                .unwrap_or(StatusCode::BadUnexpectedError);
            if !status.is_good() {
                return Err(LinkError::OpcUaRefused {
                    endpoint: self.endpoint.clone(),
                    operation: format!("write `link.nodes.{name}` ({node_id})"),
                    status: status.to_string(),
                });
            }
        }
        if self.config.verify_writes {
            self.verify(&session, &values).await?;
        }
        Ok(())
    }

    async fn verify(
        &mut self,
        session: &Session,
        values: &[(&'static str, NodeId, Variant)],
    ) -> Result<(), LinkError> {
        let request: Vec<ReadValueId> = values
            .iter()
            .map(|(_, node_id, _)| ReadValueId {
                node_id: node_id.clone(),
                attribute_id: AttributeId::Value as u32,
                ..ReadValueId::default()
            })
            .collect();
        let operation = format!("verify {} nodes", values.len());
        let read = self
            .call(
                operation,
                "read-back timed out".into(),
                session.read(&request, TimestampsToReturn::Neither, 0.0),
            )
            .await?;
        for (i, (name, node_id, expected)) in values.iter().enumerate() {
            let actual = read.get(i).and_then(|dv| dv.value.as_ref());
            if !actual.is_some_and(|actual| same_value(actual, expected)) {
                return Err(LinkError::OpcUaVerifyMismatch {
                    endpoint: self.endpoint.clone(),
                    node: format!("`link.nodes.{name}` ({node_id})"),
                    expected: format!("{expected:?}"),
                    actual: format!("{actual:?}"),
                });
            }
        }
        Ok(())
    }
}

/// Variant equality where NaN equals NaN (a fail-safe score is NaN).
fn same_value(a: &Variant, b: &Variant) -> bool {
    match (a, b) {
        (Variant::Float(x), Variant::Float(y)) => x.to_bits() == y.to_bits() || x == y,
        _ => a == b,
    }
}

fn absolute(path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    }
}

/// Copies the server's certificate into `pki_dir/trusted/` (the client trusts what is there).
fn trust_server_certificate(pki_dir: &Path, cert: &Path) -> std::io::Result<()> {
    let trusted = pki_dir.join("trusted");
    std::fs::create_dir_all(&trusted)?;
    let name = cert
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    std::fs::copy(cert, trusted.join(name))?;
    Ok(())
}

impl PlcLink for OpcUaLink {
    fn target(&self) -> &str {
        &self.endpoint
    }

    fn is_connected(&self) -> bool {
        self.connected.is_some()
    }

    async fn connect(&mut self) -> Result<(), LinkError> {
        self.drop_session();
        let limit = Duration::from_millis(self.config.connect_timeout_ms);
        let description = self.endpoint_description();
        let identity = self.identity();
        let started = tokio::time::Instant::now();
        let limit_ms = self.config.connect_timeout_ms;
        let timed_out = |what: &str| {
            format!("{what} timed out after {limit_ms} ms (`link.connect_timeout_ms`)")
        };
        let discovery = {
            let client = self.client()?;
            timeout(
                limit,
                client.connect_to_matching_endpoint(description, identity),
            )
            .await
        };
        let (session, event_loop) = match discovery {
            Ok(Ok(pair)) => pair,
            Ok(Err(error)) => {
                return Err(self.lost(
                    "connect (endpoint discovery)",
                    format!("{error} (is the server running, and does it offer `link.security_policy`/`security_mode`?)"),
                ));
            }
            Err(_) => return Err(self.lost("connect", timed_out("endpoint discovery"))),
        };
        session.disable_reconnects();
        let event_loop = event_loop.spawn();
        let left = limit.saturating_sub(started.elapsed());
        match timeout(left, session.wait_for_connection()).await {
            Ok(true) => {}
            Ok(false) => {
                event_loop.abort();
                return Err(self.lost(
                    "connect (session)",
                    "the server refused the session (certificate not trusted, user token rejected?)",
                ));
            }
            Err(_) => {
                event_loop.abort();
                return Err(self.lost(
                    "connect (session)",
                    timed_out("opening the secure channel and session"),
                ));
            }
        }
        self.connected = Some(Connected {
            session,
            event_loop,
        });
        self.backoff.reset();
        Ok(())
    }

    fn next_retry_delay(&mut self) -> Duration {
        self.backoff.next_delay()
    }

    async fn disconnect(&mut self) {
        if let Some(c) = self.connected.take() {
            let _ = timeout(self.request_timeout(), c.session.disconnect()).await;
            c.event_loop.abort();
        }
    }

    async fn write_decision(&mut self, decision: &Decision) -> Result<(), LinkError> {
        let values = self
            .signals
            .iter()
            .filter_map(|(name, node_id)| {
                signal_value(name, decision, &self.reject_on).map(|v| (*name, node_id.clone(), v))
            })
            .collect();
        self.write_values(values).await
    }

    fn has_heartbeat(&self) -> bool {
        self.heartbeat.is_some()
    }

    async fn write_heartbeat(&mut self, counter: u16) -> Result<(), LinkError> {
        match self.heartbeat.clone() {
            Some(node_id) => {
                self.write_values(vec![("heartbeat", node_id, Variant::UInt16(counter))])
                    .await
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use forgeline_schemas::{Correlation, Severity};

    #[test]
    fn node_ids_parse_or_say_why() {
        assert!(parse_node_id("ns=2;s=Press.Reject").is_ok());
        assert!(parse_node_id("ns=3;i=1001").is_ok());
        assert!(parse_node_id("Press.Reject").is_err());
    }

    #[test]
    fn signal_values_have_the_documented_types() {
        let d = Decision {
            key: Correlation::new("press-07", 42, 1),
            verdict: Verdict::Reject,
            severity: Severity::Warning,
            score: 4.5,
            model_version: "press-anomaly@1.2.0".into(),
            ..Decision::default()
        };
        let on = [Verdict::Reject];
        assert_eq!(
            signal_value("reject", &d, &on),
            Some(Variant::Boolean(true))
        );
        assert_eq!(signal_value("verdict", &d, &on), Some(Variant::UInt16(2)));
        assert_eq!(signal_value("severity", &d, &on), Some(Variant::UInt16(1)));
        assert_eq!(signal_value("score", &d, &on), Some(Variant::Float(4.5)));
        assert_eq!(signal_value("seq", &d, &on), Some(Variant::UInt64(42)));
        assert_eq!(
            signal_value("model_version", &d, &on),
            Some(Variant::from("press-anomaly@1.2.0"))
        );
        assert_eq!(
            signal_value("fail_safe", &d, &on),
            Some(Variant::Boolean(false))
        );
        assert_eq!(signal_value("heartbeat", &d, &on), None);
        assert!(same_value(
            &Variant::Float(f32::NAN),
            &Variant::Float(f32::NAN)
        ));
    }

    #[test]
    fn transport_statuses_mean_reconnect_and_others_a_refusal() {
        assert!(is_connection_status(StatusCode::BadConnectionClosed));
        assert!(is_connection_status(StatusCode::BadSessionIdInvalid));
        assert!(!is_connection_status(StatusCode::BadTypeMismatch));
        assert!(!is_connection_status(StatusCode::BadUserAccessDenied));
    }

    #[test]
    fn connecting_to_a_closed_port_fails_as_connection_lost() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = LinkConfig {
            kind: crate::LinkKind::Opcua,
            endpoint: Some(format!("opc.tcp://127.0.0.1:{port}/")),
            nodes: crate::OpcUaNodes {
                verdict: Some("ns=2;s=Press.Verdict".into()),
                ..crate::OpcUaNodes::default()
            },
            ..LinkConfig::default()
        };
        let mut link = OpcUaLink::new(config, vec![Verdict::Reject]).unwrap();
        runtime.block_on(async {
            let err = link.connect().await.unwrap_err();
            assert!(err.is_connection_lost(), "{err}");
            assert!(
                err.to_string().contains(&format!("127.0.0.1:{port}")),
                "{err}"
            );
            assert!(!link.is_connected());
            let err = link.write_decision(&Decision::default()).await.unwrap_err();
            assert!(err.is_connection_lost(), "{err}");
        });
    }
}
