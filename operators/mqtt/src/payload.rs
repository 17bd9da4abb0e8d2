//! Versioned JSON payloads (schema 1) built by pure functions from the message types.
//!
//! Every payload is a JSON object with `schema` (= [`PAYLOAD_SCHEMA`]), `type` (`alert`, `score`,
//! `health`), the correlation keys (`asset`, `sequence`, `timestamp` in RFC 3339 UTC with ms,
//! `acq_time_ns`) and the device that published it. Non-finite numbers (a NaN score) are `null`.
//! Fields are only ever added within a schema version; renaming or removing one bumps it.

use forgeline_schemas::{Decision, Health, HealthLevel, Score, Severity, Verdict};
use serde::{Deserialize, Serialize};

/// The payload schema version written in every payload's `schema` field.
pub const PAYLOAD_SCHEMA: u32 = 1;

/// Payload of `…/alerts` (QoS 1): one non-ok decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertPayload {
    /// Payload schema version ([`PAYLOAD_SCHEMA`]).
    pub schema: u32,
    /// Always `alert`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Edge device that published it.
    pub device: String,
    /// Asset (machine) id.
    pub asset: String,
    /// Stroke or frame number.
    pub sequence: u64,
    /// Acquisition time, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// Acquisition time, ns since the Unix epoch.
    pub acq_time_ns: u64,
    /// When the decision was made, ns since the Unix epoch.
    pub decided_time_ns: u64,
    /// `ok`, `reject`, `sensor_fault`, `no_decision`.
    pub verdict: Verdict,
    /// `none`, `warning`, `critical`.
    pub severity: Severity,
    /// The score the verdict was based on (`null` when none).
    pub score: Option<f32>,
    /// The threshold it was compared with (`null` when not finite).
    pub threshold: Option<f32>,
    /// Model name and version.
    pub model_version: String,
    /// Human-readable reason.
    pub reason: String,
    /// Where the item came from.
    pub source: String,
    /// Acquisition to hand-over to telemetry, ms.
    pub latency_ms: f64,
}

/// Payload of `…/scores` (QoS 0, sampled): one model output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorePayload {
    /// Payload schema version ([`PAYLOAD_SCHEMA`]).
    pub schema: u32,
    /// Always `score`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Edge device that published it.
    pub device: String,
    /// Asset (machine) id.
    pub asset: String,
    /// Stroke or frame number.
    pub sequence: u64,
    /// Acquisition time, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// Acquisition time, ns since the Unix epoch.
    pub acq_time_ns: u64,
    /// Anomaly score or defect probability (`null` when the model did not run).
    pub score: Option<f32>,
    /// Class label (empty for anomaly scores).
    pub label: String,
    /// Model name and version.
    pub model_version: String,
    /// Execution provider.
    pub provider: String,
    /// Names of the data-quality flags set (empty: data fit for a verdict).
    pub quality_flags: Vec<String>,
    /// Time in the model, ms.
    pub inference_ms: f64,
    /// Acquisition to hand-over to telemetry, ms.
    pub latency_ms: f64,
}

/// Payload of `…/health` (QoS 1): one health event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthPayload {
    /// Payload schema version ([`PAYLOAD_SCHEMA`]).
    pub schema: u32,
    /// Always `health`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Edge device that published it.
    pub device: String,
    /// Asset (or line) concerned.
    pub asset: String,
    /// The event's sequence number (per node).
    pub sequence: u64,
    /// Event time, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// Event time, ns since the Unix epoch.
    pub acq_time_ns: u64,
    /// Reporting node.
    pub node_id: String,
    /// Component within the node.
    pub component: String,
    /// `ok`, `warning`, `alarm`.
    pub level: HealthLevel,
    /// Machine-readable code (`broker_down`, `plc_down`…).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Numeric value (`null` when none).
    pub value: Option<f64>,
}

/// The `alerts` payload of `decision`, handed over at `now_ns` by `device`.
pub fn alert_payload(decision: &Decision, device: &str, now_ns: u64) -> String {
    let key = &decision.key;
    to_json(&AlertPayload {
        schema: PAYLOAD_SCHEMA,
        kind: "alert".into(),
        device: device.into(),
        asset: key.asset_id.clone(),
        sequence: key.seq,
        timestamp: rfc3339_ms(key.acq_time_ns),
        acq_time_ns: key.acq_time_ns,
        decided_time_ns: decision.decided_time_ns,
        verdict: decision.verdict,
        severity: decision.severity,
        score: finite32(decision.score),
        threshold: finite32(decision.threshold),
        model_version: decision.model_version.clone(),
        reason: decision.reason.clone(),
        source: decision.source.clone(),
        latency_ms: ms_between(key.acq_time_ns, now_ns),
    })
}

/// The `scores` payload of `score`, handed over at `now_ns` by `device`.
pub fn score_payload(score: &Score, device: &str, now_ns: u64) -> String {
    let key = &score.key;
    to_json(&ScorePayload {
        schema: PAYLOAD_SCHEMA,
        kind: "score".into(),
        device: device.into(),
        asset: key.asset_id.clone(),
        sequence: key.seq,
        timestamp: rfc3339_ms(key.acq_time_ns),
        acq_time_ns: key.acq_time_ns,
        score: finite32(score.score),
        label: score.label.clone(),
        model_version: score.model_version.clone(),
        provider: score.provider.clone(),
        quality_flags: score
            .quality
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        #[expect(clippy::cast_precision_loss, reason = "ns to ms for display")]
        inference_ms: score.inference_ns as f64 / 1e6,
        latency_ms: ms_between(key.acq_time_ns, now_ns),
    })
}

/// The `health` payload of `health`, published by `device`.
pub fn health_payload(health: &Health, device: &str) -> String {
    let key = &health.key;
    to_json(&HealthPayload {
        schema: PAYLOAD_SCHEMA,
        kind: "health".into(),
        device: device.into(),
        asset: key.asset_id.clone(),
        sequence: key.seq,
        timestamp: rfc3339_ms(key.acq_time_ns),
        acq_time_ns: key.acq_time_ns,
        node_id: health.node_id.clone(),
        component: health.component.clone(),
        level: health.level,
        code: health.code.clone(),
        message: health.message.clone(),
        value: health.value.is_finite().then_some(health.value),
    })
}

/// True for decisions that go on the `alerts` topic: every verdict except `ok`.
pub fn is_alert(decision: &Decision) -> bool {
    decision.verdict != Verdict::Ok
}

#[expect(
    clippy::expect_used,
    reason = "payload structs hold only strings, integers and finite floats: serialisation cannot fail"
)]
fn to_json<T: Serialize>(payload: &T) -> String {
    serde_json::to_string(payload).expect("payload structs always serialise")
}

fn finite32(x: f32) -> Option<f32> {
    x.is_finite().then_some(x)
}

#[expect(clippy::cast_precision_loss, reason = "ns to ms for display")]
fn ms_between(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e6
}

/// `ns` since the Unix epoch as RFC 3339 UTC with milliseconds, e.g. `2023-11-14T22:13:20.000Z`.
pub fn rfc3339_ms(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let ms = (ns % 1_000_000_000) / 1_000_000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use forgeline_schemas::{Correlation, QualityFlags};
    use proptest::prelude::*;

    fn decision() -> Decision {
        Decision {
            key: Correlation::new("press-07", 42, 1_700_000_000_000_000_000),
            verdict: Verdict::Reject,
            severity: Severity::Critical,
            score: 4.5,
            threshold: 3.0,
            model_version: "press-anomaly@1.0.0".into(),
            reason: "score 4.5 > critical 3.0".into(),
            decided_time_ns: 1_700_000_000_002_000_000,
            source: "simulated:1".into(),
        }
    }

    #[test]
    fn alert_payload_has_the_documented_fields() {
        let text = alert_payload(&decision(), "edge-1", 1_700_000_000_003_500_000);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["type"], "alert");
        assert_eq!(v["asset"], "press-07");
        assert_eq!(v["sequence"], 42);
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["verdict"], "reject");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["score"], 4.5);
        assert_eq!(v["threshold"], 3.0);
        assert_eq!(v["model_version"], "press-anomaly@1.0.0");
        assert_eq!(v["latency_ms"], 3.5);
        let back: AlertPayload = serde_json::from_str(&text).unwrap();
        assert_eq!(back.device, "edge-1");
    }

    #[test]
    fn nan_score_is_null() {
        let mut d = decision();
        d.verdict = Verdict::SensorFault;
        d.score = f32::NAN;
        let v: serde_json::Value = serde_json::from_str(&alert_payload(&d, "e", 0)).unwrap();
        assert!(v["score"].is_null());
        assert_eq!(
            v["latency_ms"], 0.0,
            "now before acquisition saturates to 0"
        );
    }

    #[test]
    fn score_and_health_payloads() {
        let s = Score {
            key: Correlation::new("press-07", 7, 1_000_000_000),
            score: 0.25,
            quality: QualityFlags::CLIPPING,
            inference_ns: 1_500_000,
            model_version: "m@1".into(),
            ..Score::default()
        };
        let v: serde_json::Value =
            serde_json::from_str(&score_payload(&s, "e", 3_000_000_000)).unwrap();
        assert_eq!(v["type"], "score");
        assert_eq!(v["quality_flags"], serde_json::json!(["clipping"]));
        assert_eq!(v["inference_ms"], 1.5);
        assert_eq!(v["latency_ms"], 2000.0);
        let h = Health {
            key: Correlation::new("line-2", 3, 0),
            node_id: "telemetry".into(),
            component: "broker".into(),
            level: HealthLevel::Alarm,
            code: "broker_down".into(),
            message: "x".into(),
            value: f64::NAN,
        };
        let v: serde_json::Value = serde_json::from_str(&health_payload(&h, "e")).unwrap();
        assert_eq!(v["level"], "alarm");
        assert_eq!(v["code"], "broker_down");
        assert!(v["value"].is_null());
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(
            rfc3339_ms(951_782_400_123_000_000),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_ms(4_102_444_799_999_999_999),
            "2099-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn only_non_ok_verdicts_are_alerts() {
        let mut d = decision();
        assert!(is_alert(&d));
        d.verdict = Verdict::Ok;
        assert!(!is_alert(&d));
    }

    proptest! {
        #[test]
        fn alert_payload_round_trips(seq in any::<u64>(), t in any::<u64>(), score in any::<f32>(), reason in ".*") {
            let mut d = decision();
            d.key.seq = seq;
            d.key.acq_time_ns = t;
            d.score = score;
            d.reason = reason.clone();
            let p: AlertPayload = serde_json::from_str(&alert_payload(&d, "e", t)).unwrap();
            prop_assert_eq!(p.sequence, seq);
            prop_assert_eq!(p.acq_time_ns, t);
            prop_assert_eq!(p.reason, reason);
            prop_assert_eq!(p.score, score.is_finite().then_some(score));
            prop_assert_eq!(p.timestamp.len(), 24);
        }
    }
}
