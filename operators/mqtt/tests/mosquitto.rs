//! Behaviour tests against a real mosquitto broker that each test starts on a free loopback
//! port (and always kills, through [`Broker`]'s `Drop`): topics and QoS, the retained status and
//! Last Will, TLS with client certificates, a broker outage under load, and a queue left by a
//! killed process. Needs `/usr/sbin/mosquitto` and `mosquitto_sub`/`mosquitto_pub` (Debian
//! packages `mosquitto`, `mosquitto-clients`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::fs;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use forgeline_mqtt::{
    Kind, MqttConfig, Outbound, Outcome, Telemetry, TelemetryEvent, TlsConfig, alert_payload,
    health_payload, score_payload,
};
use forgeline_schemas::{Correlation, Decision, Health, HealthLevel, Score, Severity, Verdict};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const ALERTS: &str = "factory/+/line/+/asset/+/alerts";
const DEVICE: &str = "edge-1";
const T0: u64 = 1_700_000_000_000_000_000;

// ------------------------------------------------------------------------------------------
// Harness.

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// A mosquitto process; killed on drop, even when the test fails.
struct Broker {
    child: Option<Child>,
    conf: PathBuf,
    port: u16,
}

impl Broker {
    fn start(dir: &Path, port: u16, extra: &str) -> Self {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} not found: install the Debian packages `mosquitto mosquitto-clients`"
        );
        let data = dir.join("broker");
        fs::create_dir_all(&data).unwrap();
        let conf = dir.join("mosquitto.conf");
        fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n\
                 persistence true\npersistence_location {}/\nmax_queued_messages 0\n\
                 log_dest file {}\n{extra}\n",
                data.display(),
                dir.join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let mut broker = Self {
            child: None,
            conf,
            port,
        };
        broker.restart();
        broker
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(5), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "mosquitto did not listen on {port}"
        );
    }

    /// Graceful stop (SIGTERM: the broker saves its persistent sessions).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let exited = wait_until(Duration::from_secs(5), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !exited {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Broker {
    /// Sends `signal` (`STOP`, `KILL`…) to the broker process.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("broker running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Kills the broker without letting it save anything (SIGKILL).
    fn kill_hard(&mut self) {
        self.signal("KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A child process (subscriber or publisher) killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `mosquitto_sub` writing what it receives to a file.
struct Subscriber {
    _proc: Proc,
    out: PathBuf,
}

impl Subscriber {
    fn start(port: u16, topic: &str, args: &[&str], out: PathBuf) -> Self {
        let file = fs::File::create(&out).unwrap();
        let child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
            ])
            .args(args)
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (Debian package mosquitto-clients)");
        Self {
            _proc: Proc(child),
            out,
        }
    }

    fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Publishes probes on `probe_topic` until the subscriber shows one (it is subscribed).
    fn wait_ready(&self, port: u16, probe_topic: &str, tls: &[&str]) {
        let ok = wait_until(Duration::from_secs(10), || {
            let _ = Command::new("mosquitto_pub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    probe_topic,
                ])
                .args(["-m", "probe"])
                .args(tls)
                .status();
            std::thread::sleep(Duration::from_millis(100));
            self.lines().iter().any(|l| l.contains("probe"))
        });
        assert!(ok, "subscriber never received a probe on {probe_topic}");
    }
}

/// One message read by a fresh `mosquitto_sub -C 1` (e.g. a retained status): `"%r %p"`.
fn read_one(port: u16, topic: &str, tls: &[&str]) -> Option<String> {
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-C",
            "1",
            "-W",
            "3",
        ])
        .args(["-t", topic, "-F", "%r %p"])
        .args(tls)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn alert(seq: u64) -> Decision {
    Decision {
        key: Correlation::new("press-07", seq, T0 + seq * 1_000_000),
        verdict: Verdict::Reject,
        severity: if seq.is_multiple_of(2) {
            Severity::Warning
        } else {
            Severity::Critical
        },
        score: 3.0 + (seq % 7) as f32,
        threshold: 3.0,
        model_version: "press-anomaly@1.0.0".into(),
        reason: format!("stroke {seq} over threshold"),
        decided_time_ns: T0 + seq * 1_000_000 + 2_000_000,
        source: "test".into(),
    }
}

fn now_ns(seq: u64) -> u64 {
    T0 + seq * 1_000_000 + 5_000_000
}

fn expected_alert(seq: u64) -> String {
    alert_payload(&alert(seq), DEVICE, now_ns(seq))
}

fn config(port: u16, queue: &Path) -> MqttConfig {
    MqttConfig {
        port,
        factory: "f1".into(),
        line: "l2".into(),
        device: DEVICE.into(),
        queue_path: queue.to_owned(),
        keepalive_s: 5,
        reconnect_min_ms: 50,
        reconnect_max_ms: 400,
        connect_timeout_s: 2,
        ..MqttConfig::default()
    }
}

/// `(topic, payload)` of `mosquitto_sub -v` lines on alert topics (probes left out).
fn alert_lines(sub: &Subscriber) -> Vec<(String, String)> {
    sub.lines()
        .into_iter()
        .filter_map(|l| {
            let (topic, payload) = l.split_once(' ')?;
            (topic.ends_with("/alerts") && payload != "probe")
                .then(|| (topic.to_owned(), payload.to_owned()))
        })
        .collect()
}

fn seq_of(payload: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap();
    v["sequence"].as_u64().unwrap()
}

// ------------------------------------------------------------------------------------------
// Child processes: this test binary re-run with `FORGELINE_MQTT_CHILD` set.

const CHILD_ENV: &str = "FORGELINE_MQTT_CHILD";

/// Runs `mode` in a child process of this test binary; it touches `marker` when ready.
fn spawn_child(mode: &str, port: u16, queue: &Path, count: u64, marker: &Path) -> Proc {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "child_process_entry", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{mode}:{port}:{count}"))
        .env("FORGELINE_MQTT_CHILD_QUEUE", queue)
        .env("FORGELINE_MQTT_CHILD_MARKER", marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

#[test]
#[ignore = "helper: run as a child process by the Last Will and kill tests"]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(':');
    let (mode, port, count) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().parse::<u16>().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let queue = PathBuf::from(std::env::var("FORGELINE_MQTT_CHILD_QUEUE").unwrap());
    let marker = PathBuf::from(std::env::var("FORGELINE_MQTT_CHILD_MARKER").unwrap());
    let (telemetry, _events) = Telemetry::start(config(port, &queue)).unwrap();
    for seq in 0..count {
        telemetry
            .enqueue(Outbound::Alert(&alert(seq)), now_ns(seq))
            .unwrap();
    }
    if mode == "publish" {
        assert!(wait_until(Duration::from_secs(10), || {
            telemetry.counters().acked == count
        }));
    }
    fs::File::create(&marker).unwrap().flush().unwrap();
    // Wait to be killed (bounded, in case the parent died).
    std::thread::sleep(Duration::from_secs(30));
}

// ------------------------------------------------------------------------------------------
// Tests.

#[test]
fn publishes_each_kind_on_its_topic_with_its_qos_and_a_retained_status() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(dir.path(), port, "");
    let sub = Subscriber::start(
        port,
        "factory/#",
        &["-F", "%t %q %p"],
        dir.path().join("sub.txt"),
    );
    sub.wait_ready(port, "factory/probe", &[]);

    let mut cfg = config(port, &dir.path().join("q.redb"));
    cfg.publish_scores = true;
    cfg.score_sample_every = 2;
    let (telemetry, _events) = Telemetry::start(cfg).unwrap();
    assert!(wait_until(Duration::from_secs(5), || telemetry
        .counters()
        .connected));

    let decision = alert(1);
    let score = Score {
        key: decision.key.clone(),
        score: 4.0,
        model_version: "press-anomaly@1.0.0".into(),
        ..Score::default()
    };
    let health = Health {
        key: Correlation::new("press-07", 9, T0),
        node_id: "plc-output".into(),
        component: "plc-link".into(),
        level: HealthLevel::Alarm,
        code: "plc_down".into(),
        message: "no answer".into(),
        value: f64::NAN,
    };
    let now = now_ns(1);
    assert!(matches!(
        telemetry.enqueue(Outbound::Alert(&decision), now).unwrap(),
        Outcome::Queued { .. }
    ));
    assert!(matches!(
        telemetry.enqueue(Outbound::Score(&score), now).unwrap(),
        Outcome::Queued { .. }
    ));
    // score_sample_every = 2: the second score is skipped.
    assert_eq!(
        telemetry.enqueue(Outbound::Score(&score), now).unwrap(),
        Outcome::Skipped
    );
    telemetry.enqueue(Outbound::Health(&health), now).unwrap();

    let prefix = "factory/f1/line/l2/asset/press-07";
    let expected = [
        format!(
            "{prefix}/alerts 1 {}",
            alert_payload(&decision, DEVICE, now)
        ),
        format!("{prefix}/scores 0 {}", score_payload(&score, DEVICE, now)),
        format!("{prefix}/health 1 {}", health_payload(&health, DEVICE)),
    ];
    let got_all = wait_until(Duration::from_secs(10), || {
        expected.iter().all(|e| sub.lines().contains(e))
    });
    assert!(got_all, "expected {expected:#?}\ngot {:#?}", sub.lines());
    assert!(
        sub.lines()
            .contains(&"factory/f1/edge/edge-1/status 1 online".to_owned()),
        "{:#?}",
        sub.lines()
    );
    // A fresh subscriber sees the retained status.
    assert_eq!(
        read_one(port, "factory/f1/edge/edge-1/status", &[]).as_deref(),
        Some("1 online")
    );
    assert!(wait_until(Duration::from_secs(5), || telemetry
        .counters()
        .backlog
        == 0));
    let c = telemetry.counters();
    assert_eq!(
        (c.enqueued, c.published, c.acked, c.scores_skipped),
        (3, 3, 2, 1),
        "{c:?}"
    );
    // Clean shutdown: retained `offline`.
    let c = telemetry.shutdown(Duration::from_secs(2));
    assert!(!c.connected);
    assert_eq!(
        read_one(port, "factory/f1/edge/edge-1/status", &[]).as_deref(),
        Some("1 offline")
    );
}

#[test]
fn last_will_marks_the_device_offline_when_its_process_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(dir.path(), port, "");
    let marker = dir.path().join("ready");
    let mut child = spawn_child("publish", port, &dir.path().join("q.redb"), 1, &marker);
    assert!(
        wait_until(Duration::from_secs(15), || marker.exists()),
        "child publisher never got its alert acked"
    );
    let status = "factory/f1/edge/edge-1/status";
    assert_eq!(read_one(port, status, &[]).as_deref(), Some("1 online"));
    child.0.kill().unwrap(); // SIGKILL: no DISCONNECT is sent
    child.0.wait().unwrap();
    let offline = wait_until(Duration::from_secs(10), || {
        read_one(port, status, &[]).as_deref() == Some("1 offline")
    });
    assert!(offline, "Last Will `offline` not retained after the kill");
}

#[test]
fn queue_left_by_a_killed_process_is_resent_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // no broker yet: everything stays queued
    let queue = dir.path().join("q.redb");
    let marker = dir.path().join("queued");
    let count = 200;
    let mut child = spawn_child("queue", port, &queue, count, &marker);
    assert!(wait_until(Duration::from_secs(30), || marker.exists()));
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let _broker = Broker::start(dir.path(), port, "");
    let sub = Subscriber::start(port, ALERTS, &["-v"], dir.path().join("sub.txt"));
    sub.wait_ready(port, "factory/probe/line/x/asset/y/alerts", &[]);
    let (telemetry, _events) = Telemetry::start(config(port, &queue)).unwrap();
    assert_eq!(
        telemetry.counters().backlog,
        count,
        "the reopened queue holds every alert"
    );
    let all = wait_until(Duration::from_secs(20), || {
        alert_lines(&sub).len() as u64 >= count && telemetry.counters().backlog == 0
    });
    assert!(all, "{} of {count} received", alert_lines(&sub).len());
    let payloads: Vec<String> = alert_lines(&sub).into_iter().map(|(_, p)| p).collect();
    let expected: Vec<String> = (0..count).map(expected_alert).collect();
    assert_eq!(payloads, expected, "exactly as produced, in order, once");
    assert_eq!(telemetry.counters().acked, count);
}

#[test]
fn tls_with_a_client_certificate_works_and_is_refused_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let port = free_port();
    let _broker = Broker::start(
        dir.path(),
        port,
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            certs.ca.display(),
            certs.server_cert.display(),
            certs.server_key.display()
        ),
    );
    let (ca, cert, key) = (
        certs.ca.to_str().unwrap(),
        certs.client_cert.to_str().unwrap(),
        certs.client_key.to_str().unwrap(),
    );
    let tls_args = ["--cafile", ca, "--cert", cert, "--key", key, "--insecure"];
    let sub = Subscriber::start(
        port,
        ALERTS,
        &[&["-v"][..], &tls_args].concat(),
        dir.path().join("sub.txt"),
    );
    sub.wait_ready(port, "factory/probe/line/x/asset/y/alerts", &tls_args);

    // With a client certificate: connects and publishes.
    let mut with_cert = config(port, &dir.path().join("q1.redb"));
    with_cert.client_id = "with-cert".into();
    with_cert.tls = Some(TlsConfig {
        ca_file: certs.ca.clone(),
        client_cert_file: Some(certs.client_cert.clone()),
        client_key_file: Some(certs.client_key.clone()),
    });
    let (good, _good_events) = Telemetry::start(with_cert.clone()).unwrap();
    good.enqueue(Outbound::Alert(&alert(1)), now_ns(1)).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || alert_lines(&sub).len() == 1),
        "alert over TLS not received"
    );
    assert_eq!(alert_lines(&sub)[0].1, expected_alert(1));
    assert!(good.counters().connected);

    // Without one: the broker refuses the handshake; the alert stays queued.
    let mut without = with_cert;
    without.client_id = "without-cert".into();
    without.queue_path = dir.path().join("q2.redb");
    without.tls = Some(TlsConfig {
        ca_file: certs.ca.clone(),
        client_cert_file: None,
        client_key_file: None,
    });
    let (bad, bad_events) = Telemetry::start(without).unwrap();
    bad.enqueue(Outbound::Alert(&alert(2)), now_ns(2)).unwrap();
    let event = bad_events.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        matches!(event, TelemetryEvent::BrokerDown { backlog: 1, .. }),
        "{event:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let c = bad.counters();
    assert!(!c.connected && c.published == 0 && c.backlog == 1, "{c:?}");
    assert_eq!(
        alert_lines(&sub).len(),
        1,
        "nothing got through without a certificate"
    );
}

struct Certs {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_certs(dir: &Path) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "forgeline test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(Vec::new(), DEVICE, ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    };
    Certs {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

#[test]
fn broker_outage_under_load_loses_no_alert_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Broker::start(dir.path(), port, "");
    // Persistent session (-c -i): the broker keeps QoS 1 messages for it across the restart.
    let sub = Subscriber::start(
        port,
        ALERTS,
        &["-v", "-c", "-i", "outage-subscriber"],
        dir.path().join("sub.txt"),
    );
    sub.wait_ready(port, "factory/probe/line/x/asset/y/alerts", &[]);

    let (telemetry, events) = Telemetry::start(config(port, &dir.path().join("q.redb"))).unwrap();
    assert!(wait_until(Duration::from_secs(5), || telemetry
        .counters()
        .connected));

    let count: u64 = 1500;
    let produced = AtomicU64::new(0);
    let mut enqueue_us: Vec<u64> = Vec::with_capacity(count as usize);
    let (down_at, up_at) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            let mut lat = Vec::with_capacity(count as usize);
            for seq in 0..count {
                let t = Instant::now();
                let outcome = telemetry
                    .enqueue(Outbound::Alert(&alert(seq)), now_ns(seq))
                    .unwrap();
                lat.push(t.elapsed().as_micros() as u64);
                assert!(matches!(outcome, Outcome::Queued { .. }), "{outcome:?}");
                produced.store(seq + 1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
            lat
        });
        assert!(wait_until(Duration::from_secs(20), || produced
            .load(Ordering::SeqCst)
            >= 300));
        broker.stop();
        let down_at = produced.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(2));
        broker.restart();
        let up_at = produced.load(Ordering::SeqCst);
        enqueue_us = producer.join().unwrap();
        (down_at, up_at)
    });
    assert!(
        up_at > down_at + 100,
        "alerts were produced during the outage: {down_at}..{up_at}"
    );

    let done = wait_until(Duration::from_secs(30), || {
        let mut seen = std::collections::HashSet::new();
        for (_, p) in alert_lines(&sub) {
            seen.insert(seq_of(&p));
        }
        seen.len() as u64 == count && telemetry.counters().backlog == 0
    });
    let c = telemetry.counters();
    assert!(done, "not all alerts arrived: {c:?}");

    // Every alert arrived exactly as produced; in order of first arrival; duplicates only from
    // resends after the reconnect (at-least-once).
    let lines = alert_lines(&sub);
    let mut first_seen = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (topic, payload) in &lines {
        assert_eq!(topic, "factory/f1/line/l2/asset/press-07/alerts");
        let seq = seq_of(payload);
        assert_eq!(payload, &expected_alert(seq), "alert {seq} altered");
        if seen.insert(seq) {
            first_seen.push(seq);
        }
    }
    assert_eq!(first_seen, (0..count).collect::<Vec<_>>(), "order");
    // Duplicates come from our resends after the reconnect and from the broker redelivering
    // to the subscriber what was in flight to it when it stopped (at most its in-flight
    // window, mosquitto's `max_inflight_messages` = 20).
    let duplicates = lines.len() as u64 - count;
    assert!(
        duplicates <= c.resent + 20,
        "{duplicates} duplicates, {} resent",
        c.resent
    );

    // Counters agree.
    assert_eq!(c.enqueued, count, "{c:?}");
    assert_eq!(c.dropped, [0, 0, 0], "{c:?}");
    assert_eq!(c.backlog, 0, "{c:?}");
    assert_eq!(c.published, count + c.resent, "{c:?}");
    assert!(c.acked >= count && c.acked <= c.published, "{c:?}");
    assert!(c.reconnects >= 1 && c.connected, "{c:?}");

    // Events: down, then recovered after about the outage.
    let events: Vec<TelemetryEvent> = events.try_iter().collect();
    let down = events
        .iter()
        .position(|e| matches!(e, TelemetryEvent::BrokerDown { .. }))
        .unwrap_or_else(|| panic!("no broker_down in {events:?}"));
    let Some(TelemetryEvent::BrokerRecovered { gap, backlog }) = events[down..]
        .iter()
        .find(|e| matches!(e, TelemetryEvent::BrokerRecovered { .. }))
    else {
        panic!("no broker_recovered after broker_down in {events:?}");
    };
    assert!(*gap >= Duration::from_millis(1500), "gap {gap:?}");
    assert!(*backlog > 0);

    enqueue_us.sort_unstable();
    let pct = |p: f64| enqueue_us[((enqueue_us.len() - 1) as f64 * p) as usize];
    println!(
        "outage: {count} alerts, {} produced during the outage, gap {gap:?}, backlog at \
         reconnect {backlog}, duplicates {duplicates}, resent {}, enqueue latency us \
         p50 {} p99 {} max {}",
        up_at - down_at,
        c.resent,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

#[test]
fn a_full_queue_drops_scores_first_counts_and_raises_one_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // no broker: everything stays queued
    let mut cfg = config(port, &dir.path().join("q.redb"));
    cfg.disk_cap_bytes = 64 * 1024;
    cfg.publish_scores = true;
    cfg.max_score_backlog = 1_000_000;
    let (telemetry, events) = Telemetry::start(cfg).unwrap();
    let score = Score {
        key: Correlation::new("press-07", 1, T0),
        score: 1.0,
        ..Score::default()
    };
    while telemetry.counters().dropped_of(Kind::Score) == 0 {
        telemetry.enqueue(Outbound::Score(&score), T0).unwrap();
    }
    let scores_queued = telemetry.counters().backlog;
    // Alerts evict scores, oldest first; an alert is dropped only once no score is left.
    let mut alerts_queued = 0;
    while telemetry.counters().dropped_of(Kind::Alert) == 0 {
        let seq = alerts_queued;
        if let Outcome::Queued { .. } = telemetry
            .enqueue(Outbound::Alert(&alert(seq)), now_ns(seq))
            .unwrap()
        {
            alerts_queued += 1;
        }
    }
    let c = telemetry.counters();
    assert_eq!(c.backlog, alerts_queued, "only alerts are left: {c:?}");
    assert_eq!(
        c.dropped_of(Kind::Score),
        c.enqueued - alerts_queued + 1,
        "every queued score was evicted (+1: the score refused when the queue first filled): {c:?}"
    );
    assert!(scores_queued > 50 && alerts_queued > 50, "{c:?}");
    assert_eq!(c.dropped_of(Kind::Alert), 1, "{c:?}");
    assert!(c.backlog_bytes <= 64 * 1024, "{c:?}");
    let alarms: Vec<_> = events
        .try_iter()
        .filter(|e| matches!(e, TelemetryEvent::QueueFull { .. }))
        .collect();
    assert_eq!(alarms.len(), 1, "one alarm per episode: {alarms:?}");
    let health = alarms[0].to_health("line-2", "telemetry", 1, T0);
    assert_eq!(health.code, "queue_full");
}

#[test]
fn publishes_unacked_when_the_broker_died_are_resent() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // autosave: the subscriber's persistent session is on disk before the broker is killed.
    let mut broker = Broker::start(dir.path(), port, "autosave_interval 1");
    let sub = Subscriber::start(
        port,
        ALERTS,
        &["-v", "-c", "-i", "resend-subscriber"],
        dir.path().join("sub.txt"),
    );
    sub.wait_ready(port, "factory/probe/line/x/asset/y/alerts", &[]);
    // Wait for an autosave that happened after the subscription.
    let subscribed = std::time::SystemTime::now();
    let db = dir.path().join("broker").join("mosquitto.db");
    let saved = wait_until(Duration::from_secs(6), || {
        fs::metadata(&db)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > subscribed)
    });
    assert!(saved, "mosquitto did not autosave {}", db.display());

    let (telemetry, _events) = Telemetry::start(config(port, &dir.path().join("q.redb"))).unwrap();
    assert!(wait_until(Duration::from_secs(5), || telemetry
        .counters()
        .connected));
    broker.signal("STOP"); // frozen: publishes are written to the socket, never acked
    let count = 20; // below the in-flight window (32): all are written
    for seq in 0..count {
        telemetry
            .enqueue(Outbound::Alert(&alert(seq)), now_ns(seq))
            .unwrap();
    }
    assert!(wait_until(Duration::from_secs(5), || telemetry
        .counters()
        .published
        == count));
    assert_eq!(telemetry.counters().acked, 0);
    broker.kill_hard();
    broker.restart();

    let done = wait_until(Duration::from_secs(20), || {
        let seqs: std::collections::HashSet<u64> =
            alert_lines(&sub).iter().map(|(_, p)| seq_of(p)).collect();
        seqs.len() as u64 == count && telemetry.counters().backlog == 0
    });
    let c = telemetry.counters();
    assert!(done, "{c:?}; received {:?}", alert_lines(&sub));
    assert_eq!(
        c.resent, count,
        "every unacked publish was sent again: {c:?}"
    );
    assert_eq!(c.acked, count, "{c:?}");
    let mut first_seen = Vec::new();
    for (_, payload) in alert_lines(&sub) {
        let seq = seq_of(&payload);
        assert_eq!(payload, expected_alert(seq));
        if !first_seen.contains(&seq) {
            first_seen.push(seq);
        }
    }
    assert_eq!(first_seen, (0..count).collect::<Vec<_>>());
}
