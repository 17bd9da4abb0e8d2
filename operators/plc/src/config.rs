//! Typed configuration of the PLC link: register map, link, worker and fail-safe.
//!
//! Every struct rejects unknown keys and has documented defaults (see the crate README for the
//! table). [`PlcConfig::validate`] reports every problem at once.

use std::fmt;

use forgeline_schemas::{Correlation, Decision, Severity, Verdict};
use serde::{Deserialize, Serialize};

/// Prefix of the `reason` of every fail-safe decision; [`crate::RegisterMap::encode`] sets the
/// `fail_safe_register` to 1 exactly for decisions whose reason starts with it.
pub const FAIL_SAFE_PREFIX: &str = "fail-safe:";

/// Order of the two 16-bit words of a 32-bit value (float32 score, u32 seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// High word at the lower address (Modbus convention, "ABCD").
    #[default]
    Big,
    /// Low word at the lower address ("CDAB", common on Siemens/Schneider word-swapped setups).
    Little,
}

/// How the score is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreFormat {
    /// IEEE-754 float32 across two holding registers (`word_order` applies).
    #[default]
    Float32,
    /// `round(score * score_scale)` as i16 in one register, saturated to `-32767..=32767`;
    /// NaN is written as `-32768` (0x8000).
    ScaledI16,
    /// `round(score * score_scale)` as u16 in one register, saturated to `0..=65534`;
    /// NaN is written as `65535` (0xFFFF).
    ScaledU16,
}

impl ScoreFormat {
    /// Number of holding registers the score occupies.
    pub fn width(self) -> u16 {
        match self {
            Self::Float32 => 2,
            Self::ScaledI16 | Self::ScaledU16 => 1,
        }
    }
}

/// Where each part of a decision goes on the PLC. `null` disables an address: only configured
/// addresses are ever written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterMap {
    /// Modbus unit (slave) id. Default `1`.
    pub unit_id: u8,
    /// Coil set to 1 when the verdict is in `reject_on`, else 0. Default `0`.
    pub reject_coil: Option<u16>,
    /// Verdicts that set the reject coil. Default `[reject, sensor_fault, no_decision]`
    /// (fail-safe: everything but `ok` rejects the part).
    pub reject_on: Vec<Verdict>,
    /// Holding register with the verdict code (0 `no_decision`, 1 `ok`, 2 `reject`,
    /// 3 `sensor_fault`). Default `0`.
    pub verdict_register: Option<u16>,
    /// Holding register with the severity code (0 `none`, 1 `warning`, 2 `critical`). Default `1`.
    pub severity_register: Option<u16>,
    /// First holding register of the score (1 or 2 registers, see `score_format`). Default `2`.
    pub score_registers: Option<u16>,
    /// How the score is encoded. Default `float32`.
    pub score_format: ScoreFormat,
    /// Multiplier for the scaled score formats. Default `100.0` (two decimals).
    pub score_scale: f32,
    /// Word order of 32-bit values (score as float32, seq). Default `big`.
    pub word_order: WordOrder,
    /// First of two holding registers with the low 32 bits of `seq` (u32, wraps). Default `4`.
    pub seq_registers: Option<u16>,
    /// Holding register with the model version code (`major*100+minor`, or a 16-bit hash of the
    /// version string when it is not `name@MAJOR.MINOR[.PATCH]` with minor < 100). Default `6`.
    pub model_version_register: Option<u16>,
    /// Holding register that is 1 while a fail-safe verdict is applied, 0 otherwise. Default `7`.
    pub fail_safe_register: Option<u16>,
    /// Holding register with a u16 counter (wraps) written every `heartbeat_period_ms`. Default `8`.
    pub heartbeat_register: Option<u16>,
    /// Heartbeat period in ms. Default `1000`.
    pub heartbeat_period_ms: u64,
}

impl Default for RegisterMap {
    fn default() -> Self {
        Self {
            unit_id: 1,
            reject_coil: Some(0),
            reject_on: vec![Verdict::Reject, Verdict::SensorFault, Verdict::NoDecision],
            verdict_register: Some(0),
            severity_register: Some(1),
            score_registers: Some(2),
            score_format: ScoreFormat::Float32,
            score_scale: 100.0,
            word_order: WordOrder::Big,
            seq_registers: Some(4),
            model_version_register: Some(6),
            fail_safe_register: Some(7),
            heartbeat_register: Some(8),
            heartbeat_period_ms: 1000,
        }
    }
}

impl RegisterMap {
    /// The configured holding-register ranges: `(config key, first address, width)`.
    pub fn register_ranges(&self) -> Vec<(&'static str, u16, u16)> {
        [
            ("verdict_register", self.verdict_register, 1),
            ("severity_register", self.severity_register, 1),
            (
                "score_registers",
                self.score_registers,
                self.score_format.width(),
            ),
            ("seq_registers", self.seq_registers, 2),
            ("model_version_register", self.model_version_register, 1),
            ("fail_safe_register", self.fail_safe_register, 1),
            ("heartbeat_register", self.heartbeat_register, 1),
        ]
        .into_iter()
        .filter_map(|(name, address, width)| address.map(|a| (name, a, width)))
        .collect()
    }

    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        let ranges = self.register_ranges();
        for &(name, address, width) in &ranges {
            if u32::from(address) + u32::from(width) > 0x1_0000 {
                problems.push(ConfigProblem::new(
                    format!("registers.{name}"),
                    address,
                    format!(
                        "an address <= {} ({width} registers must fit below 65536)",
                        0x1_0000 - u32::from(width)
                    ),
                ));
            }
        }
        for (i, &(a_name, a, a_width)) in ranges.iter().enumerate() {
            for &(b_name, b, b_width) in &ranges[i + 1..] {
                let (a_end, b_end) = (
                    u32::from(a) + u32::from(a_width),
                    u32::from(b) + u32::from(b_width),
                );
                if u32::from(a) < b_end && u32::from(b) < a_end {
                    problems.push(ConfigProblem::new(
                        format!("registers.{b_name}"),
                        b,
                        format!(
                            "registers that do not overlap `registers.{a_name}` ({a}..{})",
                            a_end - 1
                        ),
                    ));
                }
            }
        }
        if self.score_format != ScoreFormat::Float32
            && !(self.score_scale.is_finite() && self.score_scale > 0.0)
        {
            problems.push(ConfigProblem::new(
                "registers.score_scale",
                self.score_scale,
                "a finite number > 0 for the scaled score formats",
            ));
        }
        if self.heartbeat_register.is_some() && self.heartbeat_period_ms == 0 {
            problems.push(ConfigProblem::new(
                "registers.heartbeat_period_ms",
                0,
                "a period > 0 ms when `heartbeat_register` is set (or set `heartbeat_register: null`)",
            ));
        }
        if self.reject_coil.is_some() && self.reject_on.contains(&Verdict::Ok) {
            problems.push(ConfigProblem::new(
                "registers.reject_on",
                "ok",
                "verdicts other than `ok`: an ok part must never fire the reject coil",
            ));
        }
    }
}

/// Which protocol the link speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// Modbus TCP (`link.address`, the `registers` map). No authentication, no encryption.
    #[default]
    Modbus,
    /// OPC UA binary (`link.endpoint`, the `link.nodes` node ids), with optional signing,
    /// encryption and user authentication.
    Opcua,
}

/// OPC UA security policy of the secure channel (the names of OPC UA Part 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SecurityPolicy {
    /// No signing, no encryption (`security_mode` must be `None`).
    #[default]
    None,
    /// Deprecated by the OPC Foundation; only for old PLCs.
    Basic128Rsa15,
    /// Deprecated by the OPC Foundation; only for old PLCs.
    Basic256,
    /// RSA 2048+, SHA-256: the common choice on current PLCs.
    Basic256Sha256,
    /// RSA-OAEP with SHA-256, AES-128.
    #[serde(rename = "Aes128_Sha256_RsaOaep", alias = "Aes128Sha256RsaOaep")]
    Aes128Sha256RsaOaep,
    /// RSA-PSS with SHA-256, AES-256.
    #[serde(rename = "Aes256_Sha256_RsaPss", alias = "Aes256Sha256RsaPss")]
    Aes256Sha256RsaPss,
}

/// OPC UA message security mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SecurityMode {
    /// Messages are neither signed nor encrypted (only with policy `None`).
    #[default]
    None,
    /// Messages are signed (integrity, authenticity), not encrypted.
    Sign,
    /// Messages are signed and encrypted.
    SignAndEncrypt,
}

/// OPC UA node ids (e.g. `ns=2;s=Press.Reject`) the signals are written to; `null` (the
/// default) leaves a signal out. The variable's data type must be the one listed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpcUaNodes {
    /// `Boolean`: true when the verdict is in `registers.reject_on`.
    pub reject: Option<String>,
    /// `UInt16`: verdict code (0 `no_decision`, 1 `ok`, 2 `reject`, 3 `sensor_fault`).
    pub verdict: Option<String>,
    /// `UInt16`: severity code (0 `none`, 1 `warning`, 2 `critical`).
    pub severity: Option<String>,
    /// `Float`: the anomaly score (NaN for fail-safe verdicts).
    pub score: Option<String>,
    /// `UInt64`: the item's sequence number (stroke, frame). Written last in each request.
    pub seq: Option<String>,
    /// `String`: the model version (e.g. `press-anomaly@1.2.0`).
    pub model_version: Option<String>,
    /// `UInt16`: counter written every `registers.heartbeat_period_ms` (wraps).
    pub heartbeat: Option<String>,
    /// `Boolean`: true while a fail-safe verdict is applied.
    pub fail_safe: Option<String>,
}

impl OpcUaNodes {
    /// The configured signals: `(config key, node id)`, in write order (seq last, heartbeat
    /// apart).
    pub fn configured(&self) -> Vec<(&'static str, &str)> {
        [
            ("reject", &self.reject),
            ("verdict", &self.verdict),
            ("severity", &self.severity),
            ("score", &self.score),
            ("model_version", &self.model_version),
            ("fail_safe", &self.fail_safe),
            ("seq", &self.seq),
            ("heartbeat", &self.heartbeat),
        ]
        .into_iter()
        .filter_map(|(name, id)| id.as_deref().map(|id| (name, id)))
        .collect()
    }
}

/// Connection to the PLC: Modbus TCP (default) or OPC UA (`kind: opcua`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// `modbus` or `opcua`. Default `modbus`.
    pub kind: LinkKind,
    /// Modbus: `host:port` of the PLC's Modbus TCP server. Default `127.0.0.1:502`.
    pub address: String,
    /// Timeout of one connection attempt (OPC UA: endpoint discovery + session), ms.
    /// Default `1000`.
    pub connect_timeout_ms: u64,
    /// Timeout of one request, ms. Default `500`.
    pub request_timeout_ms: u64,
    /// First reconnect delay, ms; doubles after each failed attempt. Default `100`.
    pub backoff_initial_ms: u64,
    /// Cap of the reconnect delay, ms. Default `5000`.
    pub backoff_max_ms: u64,
    /// Read every write back and compare (write-and-verify). Default `false`.
    pub verify_writes: bool,
    /// OPC UA: endpoint URL, `opc.tcp://host:port[/path]`. Required with `kind: opcua`.
    pub endpoint: Option<String>,
    /// OPC UA: security policy. Default `None`.
    pub security_policy: SecurityPolicy,
    /// OPC UA: message security mode. Default `None`; `Sign` or `SignAndEncrypt` with any
    /// policy but `None`.
    pub security_mode: SecurityMode,
    /// OPC UA: PKI directory (own certificate, `trusted/` and `rejected/` server certificates).
    /// Default: a fresh directory under the system temp dir (nothing persists).
    pub pki_dir: Option<String>,
    /// OPC UA: client application instance certificate (DER or PEM). Default: none; with a
    /// security policy other than `None` and no certificate, a self-signed one is generated
    /// in `pki_dir`.
    pub certificate: Option<String>,
    /// OPC UA: the certificate's private key (PEM). Set with `certificate`.
    pub private_key: Option<String>,
    /// OPC UA: the server's certificate to trust (copied into `pki_dir/trusted/`).
    /// Default: none.
    pub server_certificate: Option<String>,
    /// OPC UA: trust any server certificate (commissioning and tests only). Default `false`.
    pub trust_server_cert: bool,
    /// OPC UA: user name for a user-name identity token. Default: anonymous.
    pub username: Option<String>,
    /// OPC UA: password for `username`. Default: none.
    pub password: Option<String>,
    /// OPC UA: node id of each signal.
    pub nodes: OpcUaNodes,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            kind: LinkKind::Modbus,
            address: "127.0.0.1:502".into(),
            connect_timeout_ms: 1000,
            request_timeout_ms: 500,
            backoff_initial_ms: 100,
            backoff_max_ms: 5000,
            verify_writes: false,
            endpoint: None,
            security_policy: SecurityPolicy::None,
            security_mode: SecurityMode::None,
            pki_dir: None,
            certificate: None,
            private_key: None,
            server_certificate: None,
            trust_server_cert: false,
            username: None,
            password: None,
            nodes: OpcUaNodes::default(),
        }
    }
}

impl LinkConfig {
    /// Where the link connects: `address` (Modbus) or `endpoint` (OPC UA), for logs.
    pub fn target(&self) -> &str {
        match self.kind {
            LinkKind::Modbus => &self.address,
            LinkKind::Opcua => self.endpoint.as_deref().unwrap_or("<no endpoint>"),
        }
    }

    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        match self.kind {
            LinkKind::Modbus => self.check_modbus(problems),
            LinkKind::Opcua => self.check_opcua(problems),
        }
        for (name, value) in [
            ("link.connect_timeout_ms", self.connect_timeout_ms),
            ("link.request_timeout_ms", self.request_timeout_ms),
            ("link.backoff_initial_ms", self.backoff_initial_ms),
        ] {
            if value == 0 {
                problems.push(ConfigProblem::new(name, 0, "a duration > 0 ms"));
            }
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            problems.push(ConfigProblem::new(
                "link.backoff_max_ms",
                self.backoff_max_ms,
                format!(">= `link.backoff_initial_ms` ({})", self.backoff_initial_ms),
            ));
        }
    }

    fn check_modbus(&self, problems: &mut Vec<ConfigProblem>) {
        let port_ok = self.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            problems.push(ConfigProblem::new(
                "link.address",
                &self.address,
                "`host:port`, e.g. `plc-sim:5020`",
            ));
        }
        // OPC UA keys on a Modbus link are a mistake (probably a missing `kind: opcua`).
        let opcua_keys = [
            ("link.endpoint", self.endpoint.is_some()),
            (
                "link.security_policy",
                self.security_policy != SecurityPolicy::None,
            ),
            (
                "link.security_mode",
                self.security_mode != SecurityMode::None,
            ),
            ("link.pki_dir", self.pki_dir.is_some()),
            ("link.certificate", self.certificate.is_some()),
            ("link.private_key", self.private_key.is_some()),
            ("link.server_certificate", self.server_certificate.is_some()),
            ("link.trust_server_cert", self.trust_server_cert),
            ("link.username", self.username.is_some()),
            ("link.password", self.password.is_some()),
            ("link.nodes", self.nodes != OpcUaNodes::default()),
        ];
        for (name, set) in opcua_keys {
            if set {
                problems.push(ConfigProblem::new(
                    name,
                    "set",
                    "only with `link.kind: opcua` (this link is Modbus TCP)",
                ));
            }
        }
    }

    fn check_opcua(&self, problems: &mut Vec<ConfigProblem>) {
        if self.address != LinkConfig::default().address {
            problems.push(ConfigProblem::new(
                "link.address",
                &self.address,
                "no `address` with `kind: opcua` (use `link.endpoint`)",
            ));
        }
        match self.endpoint.as_deref() {
            None => problems.push(ConfigProblem::new(
                "link.endpoint",
                "(missing)",
                "an endpoint URL `opc.tcp://host:port`, required with `kind: opcua`",
            )),
            Some(endpoint) => {
                let port_ok = endpoint
                    .strip_prefix("opc.tcp://")
                    .map(|rest| rest.split('/').next().unwrap_or(""))
                    .and_then(|authority| authority.rsplit_once(':'))
                    .is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                    });
                if !port_ok {
                    problems.push(ConfigProblem::new(
                        "link.endpoint",
                        endpoint,
                        "`opc.tcp://host:port[/path]`, e.g. `opc.tcp://192.168.0.10:4840`",
                    ));
                }
            }
        }
        let policy_none = self.security_policy == SecurityPolicy::None;
        let mode_none = self.security_mode == SecurityMode::None;
        if policy_none != mode_none {
            problems.push(ConfigProblem::new(
                "link.security_mode",
                format!("{:?}", self.security_mode),
                if policy_none {
                    "`None` with `security_policy: None` (or choose a policy such as `Basic256Sha256`)"
                } else {
                    "`Sign` or `SignAndEncrypt` with a security policy other than `None`"
                },
            ));
        }
        if self.certificate.is_some() != self.private_key.is_some() {
            let (field, other) = if self.certificate.is_some() {
                ("link.private_key", "link.certificate")
            } else {
                ("link.certificate", "link.private_key")
            };
            problems.push(ConfigProblem::new(
                field,
                "(missing)",
                format!("set together with `{other}`"),
            ));
        }
        for (name, path) in [
            ("link.certificate", &self.certificate),
            ("link.private_key", &self.private_key),
            ("link.server_certificate", &self.server_certificate),
        ] {
            if let Some(path) = path
                && !std::path::Path::new(path).is_file()
            {
                problems.push(ConfigProblem::new(
                    name,
                    path,
                    "a readable file (path relative to the node's working directory)",
                ));
            }
        }
        if self.username.is_some() != self.password.is_some() {
            let field = if self.username.is_some() {
                "link.password"
            } else {
                "link.username"
            };
            problems.push(ConfigProblem::new(
                field,
                "(missing)",
                "`username` and `password` set together (or neither, for anonymous)",
            ));
        }
        let configured = self.nodes.configured();
        if configured.is_empty() {
            problems.push(ConfigProblem::new(
                "link.nodes",
                "{}",
                "at least one node id (`reject`, `verdict`, `severity`, `score`, `seq`, \
                 `model_version`, `heartbeat`, `fail_safe`)",
            ));
        }
        for (name, id) in configured {
            if let Err(reason) = crate::opcua::parse_node_id(id) {
                problems.push(ConfigProblem::new(
                    format!("link.nodes.{name}"),
                    id,
                    format!("an OPC UA node id such as `ns=2;s=Press.Reject` ({reason})"),
                ));
            }
        }
        for (i, (a_name, a)) in self.nodes.configured().iter().enumerate() {
            for (b_name, b) in &self.nodes.configured()[i + 1..] {
                if a == b {
                    problems.push(ConfigProblem::new(
                        format!("link.nodes.{b_name}"),
                        b,
                        format!("a node other than `link.nodes.{a_name}`"),
                    ));
                }
            }
        }
    }
}

/// The worker that owns the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Decisions queued between the node and the worker; when full the oldest is dropped and
    /// counted. Also bounds the backlog kept with `replay_backlog`. Default `64`.
    pub capacity: usize,
    /// While the link is down, keep every decision and write them all in order on recovery
    /// (`true`), or keep only the latest state of each register (`false`, no replay of stale
    /// rejects). Default `false`.
    pub replay_backlog: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            capacity: 64,
            replay_backlog: false,
        }
    }
}

/// What is written when no decision arrives in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailSafeConfig {
    /// Time allowed from acquisition to decision, ms. Default `3300`.
    pub deadline_ms: u64,
    /// Verdict written for an item without a decision in time. Default `reject`; `ok` is refused.
    pub verdict: Verdict,
    /// Severity written with it. Default `critical`.
    pub severity: Severity,
    /// Reason written with it; must start with `fail-safe:`.
    /// Default `fail-safe: no decision within {deadline_ms} ms`.
    pub reason: Option<String>,
    /// Maximum number of items awaiting a decision (see [`crate::DeadlineTracker`]). Default `4096`.
    pub max_pending: usize,
}

impl Default for FailSafeConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 3300,
            verdict: Verdict::Reject,
            severity: Severity::Critical,
            reason: None,
            max_pending: 4096,
        }
    }
}

impl FailSafeConfig {
    /// The reason written with a fail-safe verdict.
    pub fn reason(&self) -> String {
        self.reason.clone().unwrap_or_else(|| {
            format!(
                "{FAIL_SAFE_PREFIX} no decision within {} ms",
                self.deadline_ms
            )
        })
    }

    /// The deadline of an item acquired at `acq_time_ns` (ns since the epoch, saturating).
    pub fn deadline_ns(&self, acq_time_ns: u64) -> u64 {
        acq_time_ns.saturating_add(self.deadline_ms.saturating_mul(1_000_000))
    }

    /// The fail-safe decision for `key`, decided at `now_ns`. Score and threshold are NaN.
    pub fn decision(&self, key: Correlation, now_ns: u64) -> Decision {
        Decision {
            key,
            verdict: self.verdict,
            severity: self.severity,
            score: f32::NAN,
            threshold: f32::NAN,
            model_version: String::new(),
            reason: self.reason(),
            decided_time_ns: now_ns,
            source: "fail-safe".into(),
        }
    }

    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        if self.deadline_ms == 0 {
            problems.push(ConfigProblem::new(
                "fail_safe.deadline_ms",
                0,
                "a deadline > 0 ms",
            ));
        }
        if self.verdict == Verdict::Ok {
            problems.push(ConfigProblem::new(
                "fail_safe.verdict",
                "ok",
                "reject, sensor_fault or no_decision: an undecided part must never pass as ok",
            ));
        }
        if let Some(reason) = &self.reason
            && !reason.starts_with(FAIL_SAFE_PREFIX)
        {
            problems.push(ConfigProblem::new(
                "fail_safe.reason",
                reason,
                format!("a text starting with `{FAIL_SAFE_PREFIX}` (it marks the decision as fail-safe on the PLC)"),
            ));
        }
        if self.max_pending == 0 {
            problems.push(ConfigProblem::new("fail_safe.max_pending", 0, "at least 1"));
        }
    }
}

/// Whole configuration of the PLC stage (the YAML under the node's config key).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlcConfig {
    /// Connection to the PLC.
    pub link: LinkConfig,
    /// Register map.
    pub registers: RegisterMap,
    /// Queue and backlog policy.
    pub worker: WorkerConfig,
    /// Deadline and fail-safe verdict.
    pub fail_safe: FailSafeConfig,
}

impl PlcConfig {
    /// Parses YAML and validates it; `origin` names where the text came from (a file, an env
    /// key) in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml::from_str(text).map_err(|e| ConfigError {
            origin: origin.to_owned(),
            problems: vec![ConfigProblem {
                field: e.location().map_or_else(
                    || "<yaml>".into(),
                    |l| format!("line {}, column {}", l.line(), l.column()),
                ),
                value: String::new(),
                expected: e.to_string(),
            }],
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Every problem in the configuration at once; `origin` names where it came from.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.link.check(&mut problems);
        self.registers.check(&mut problems);
        if self.worker.capacity == 0 {
            problems.push(ConfigProblem::new("worker.capacity", 0, "at least 1"));
        }
        self.fail_safe.check(&mut problems);
        if self.link.kind == LinkKind::Opcua
            && self.link.nodes.heartbeat.is_some()
            && self.registers.heartbeat_period_ms == 0
        {
            problems.push(ConfigProblem::new(
                "registers.heartbeat_period_ms",
                0,
                "a period > 0 ms when `link.nodes.heartbeat` is set",
            ));
        }
        if self.link.kind == LinkKind::Opcua
            && self.link.nodes.reject.is_some()
            && self.registers.reject_on.contains(&Verdict::Ok)
        {
            problems.push(ConfigProblem::new(
                "registers.reject_on",
                "ok",
                "verdicts other than `ok`: an ok part must never set the reject signal",
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                origin: origin.to_owned(),
                problems,
            })
        }
    }
}

/// One invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `registers.seq_registers`.
    pub field: String,
    /// The rejected value as written.
    pub value: String,
    /// What would be accepted.
    pub expected: String,
}

impl ConfigProblem {
    fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.field, self.expected)
        } else {
            write!(
                f,
                "`{}` = {}: expected {}",
                self.field, self.value, self.expected
            )
        }
    }
}

/// An invalid PLC configuration, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PLC config in {origin}: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// Where the configuration came from.
    pub origin: String,
    /// Every problem found.
    pub problems: Vec<ConfigProblem>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_empty_yaml_gives_defaults() {
        let config = PlcConfig::from_yaml("{}", "test").unwrap();
        assert_eq!(config, PlcConfig::default());
        assert_eq!(
            config.fail_safe.reason(),
            "fail-safe: no decision within 3300 ms"
        );
    }

    #[test]
    fn yaml_sets_fields_and_null_disables_an_address() {
        let yaml = "
link: { address: 'plc-sim:5020', verify_writes: true }
registers:
  unit_id: 3
  reject_coil: null
  score_format: scaled_i16
  score_scale: 10
  word_order: little
  heartbeat_register: 20
worker: { capacity: 8, replay_backlog: true }
fail_safe: { deadline_ms: 500 }
";
        let config = PlcConfig::from_yaml(yaml, "test").unwrap();
        assert_eq!(config.link.address, "plc-sim:5020");
        assert!(config.link.verify_writes);
        assert_eq!(config.registers.unit_id, 3);
        assert_eq!(config.registers.reject_coil, None);
        assert_eq!(config.registers.score_format, ScoreFormat::ScaledI16);
        assert_eq!(config.registers.word_order, WordOrder::Little);
        assert_eq!(config.registers.heartbeat_register, Some(20));
        assert_eq!(config.registers.verdict_register, Some(0));
        assert_eq!(config.worker.capacity, 8);
        assert_eq!(
            config.fail_safe.reason(),
            "fail-safe: no decision within 500 ms"
        );
        assert_eq!(config.fail_safe.deadline_ns(1_000), 1_000 + 500_000_000);
    }

    #[test]
    fn unknown_keys_are_rejected_naming_the_key() {
        let err = PlcConfig::from_yaml("registers: { verdict_regster: 3 }", "env PLC_CONFIG")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("env PLC_CONFIG") && text.contains("verdict_regster"),
            "{text}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let yaml = "
link: { address: 'nohost', backoff_initial_ms: 100, backoff_max_ms: 10 }
registers: { seq_registers: 3, score_format: scaled_u16, score_scale: 0, reject_on: [ok] }
worker: { capacity: 0 }
fail_safe: { verdict: ok, reason: 'late', max_pending: 0 }
";
        let err = PlcConfig::from_yaml(yaml, "test").unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "link.address",
                "link.backoff_max_ms",
                // (seq 3..4 does not overlap: the scaled score takes one register, 2.)
                "registers.score_scale",
                "registers.reject_on",
                "worker.capacity",
                "fail_safe.verdict",
                "fail_safe.reason",
                "fail_safe.max_pending",
            ],
            "{err}"
        );
    }

    #[test]
    fn overlapping_registers_are_named_with_both_keys() {
        let map = RegisterMap {
            seq_registers: Some(3), // 3..4 overlaps score 2..3 (float32)
            ..RegisterMap::default()
        };
        let config = PlcConfig {
            registers: map,
            ..PlcConfig::default()
        };
        let err = config.validate("test").unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].field, "registers.seq_registers");
        assert!(
            err.problems[0]
                .expected
                .contains("registers.score_registers"),
            "{err}"
        );
    }

    #[test]
    fn opcua_link_parses_and_every_problem_names_its_field() {
        let yaml = "
link:
  kind: opcua
  endpoint: opc.tcp://10.0.0.5:4840
  security_policy: Basic256Sha256
  security_mode: SignAndEncrypt
  trust_server_cert: true
  username: line1
  password: secret
  nodes: { reject: 'ns=2;s=Press.Reject', seq: 'ns=2;s=Press.Seq' }
";
        let config = PlcConfig::from_yaml(yaml, "test").unwrap();
        assert_eq!(config.link.kind, LinkKind::Opcua);
        assert_eq!(config.link.security_mode, SecurityMode::SignAndEncrypt);
        assert_eq!(config.link.target(), "opc.tcp://10.0.0.5:4840");
        let bad = "
link:
  kind: opcua
  endpoint: http://10.0.0.5
  security_policy: Basic256Sha256
  certificate: /nonexistent/cert.der
  username: line1
  nodes: { reject: 'Press.Reject', seq: 'ns=2;s=A', verdict: 'ns=2;s=A' }
";
        let err = PlcConfig::from_yaml(bad, "test").unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "link.endpoint",
                "link.security_mode",
                "link.private_key",
                "link.certificate",
                "link.password",
                "link.nodes.reject",
                "link.nodes.seq",
            ],
            "{err}"
        );
        // OPC UA keys on a Modbus link are named too.
        let err = PlcConfig::from_yaml("link: { endpoint: 'opc.tcp://a:1' }", "test").unwrap_err();
        assert_eq!(err.problems[0].field, "link.endpoint", "{err}");
        assert!(err.problems[0].expected.contains("kind: opcua"), "{err}");
    }

    #[test]
    fn a_register_block_past_65535_is_rejected() {
        let config = PlcConfig {
            registers: RegisterMap {
                seq_registers: Some(65535),
                ..RegisterMap::default()
            },
            ..PlcConfig::default()
        };
        let err = config.validate("test").unwrap_err();
        assert_eq!(err.problems[0].field, "registers.seq_registers", "{err}");
    }
}
