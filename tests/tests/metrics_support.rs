//! Helpers shared by the metrics, OTLP and MQTT-outage daemon tests (included with `#[path]`;
//! built on its own it only runs the parser's unit test): a Prometheus text parser, a scraper,
//! and a line started under `dora run` in the background and stopped with Ctrl-C.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One sample line of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sample name (`…_bucket` etc. included).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// `# TYPE` per family.
    pub types: BTreeMap<String, String>,
    /// Every sample in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format 0.0.4 strictly enough for the tests: every sample must belong to a
    /// family declared by `# TYPE` before it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut e = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with("# HELP ") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or(format!("line {n}: {line}"))?;
                e.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            let (series, value) = line.rsplit_once(' ').ok_or(format!("line {n}: {line}"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .map_err(|_| format!("line {n}: bad value in {line}"))?,
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .ok_or(format!("line {n}: unclosed labels: {line}"))?;
                    (
                        name.to_owned(),
                        parse_labels(body).map_err(|m| format!("line {n}: {m}"))?,
                    )
                }
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| e.types.get(*f).is_some_and(|t| t == "histogram"))
                .unwrap_or(&name)
                .to_owned();
            if !e.types.contains_key(&family) {
                return Err(format!("line {n}: `{name}` has no # TYPE"));
            }
            e.samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Ok(e)
    }

    /// Samples named `name` whose labels include every `(k, v)` of `with`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Sum of the samples `find` returns (0 when none).
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.find(name, with).map(|s| s.value).sum()
    }

    /// The one sample `find` returns; panics when there is not exactly one.
    pub fn one(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let v: Vec<&Sample> = self.find(name, with).collect();
        assert_eq!(v.len(), 1, "{name} {with:?}: {v:?}");
        v[0].value
    }
}

fn parse_labels(body: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return Err(format!("label `{key}` value not quoted"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err(format!("label `{key}` unterminated")),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Ok(out)
}

/// `GET /metrics` on loopback `port`; `None` while nothing listens.
pub fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// A line running under `dora run` in the background (its own daemon); stopped with SIGINT
/// (dora's Ctrl-C: nodes get `Stop` and flush) and killed if it does not stop.
pub struct Line {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Line {
    /// Starts `graph` from `cwd`; output goes to `cwd/dora-run.log`; `--stop-after` bounds it.
    pub fn start(graph: &Path, cwd: &Path, stop_after_s: u64) -> Self {
        let log = cwd.join("dora-run.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(forgeline_tests::dora())
            .arg("run")
            .arg(graph)
            .args(["--stop-after", &format!("{stop_after_s}s")])
            .current_dir(cwd)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            log,
        }
    }

    /// Whether `dora run` is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The run's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ctrl-C, then waits up to 30 s (then kills). Returns the log.
    pub fn stop(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.log()
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Polls `f` every 250 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn parser_reads_types_labels_and_histograms() {
    let text = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"q\",s=\"w\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n";
    let e = Exposition::parse(text).unwrap();
    assert_eq!(e.types["h"], "histogram");
    assert_eq!(e.one("a_total", &[("k", "v\"q")]), 3.0);
    assert_eq!(e.one("h_bucket", &[("le", "+Inf")]), 2.0);
    assert!(Exposition::parse("x 1\n").is_err(), "sample without TYPE");
}
