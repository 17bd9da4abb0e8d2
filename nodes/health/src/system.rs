//! Reading the box's CPU, memory, temperatures and thermal throttling from `/proc` and `/sys`
//! (Linux). Hand-written rather than `sysinfo`: four small text files, no dependency, and the
//! reader is testable on a fake root directory. Everything the OS does not expose is `None` /
//! empty, never an error.

use crate::monitor::Temperature;
use std::path::{Path, PathBuf};

/// CPU time counters from the first line of `/proc/stat` (jiffies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Idle + iowait.
    pub idle: u64,
    /// All fields summed (guest time is already included in user/nice).
    pub total: u64,
}

/// Parses the `cpu ` line of `/proc/stat`.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    Some(CpuTimes {
        idle: v[3] + v.get(4).copied().unwrap_or(0),
        total: v.iter().sum(),
    })
}

/// Busy fraction between two readings (`None` when no time passed).
pub fn cpu_usage(prev: CpuTimes, now: CpuTimes) -> Option<f64> {
    let total = now.total.checked_sub(prev.total)?;
    let idle = now.idle.saturating_sub(prev.idle);
    (total > 0).then(|| (1.0 - idle as f64 / total as f64).clamp(0.0, 1.0))
}

/// (used, total) bytes from `/proc/meminfo` (used = `MemTotal` − `MemAvailable`).
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let kb = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let total = kb("MemTotal:")?;
    let available = kb("MemAvailable:")?;
    Some((total.saturating_sub(available) * 1024, total * 1024))
}

/// Reads the machine's state under `root` (normally `/`).
#[derive(Debug, Clone)]
pub struct SystemReader {
    root: PathBuf,
    prev_cpu: Option<CpuTimes>,
}

/// One reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// CPU busy fraction since the previous reading (`None` on the first).
    pub cpu_usage_ratio: Option<f64>,
    /// Memory used, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Memory installed, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Temperatures.
    pub temperatures: Vec<Temperature>,
    /// Thermal throttling events since boot (x86 `thermal_throttle` counters).
    pub throttle_events: Option<u64>,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn sorted_dir(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl SystemReader {
    /// A reader of `root` (`/` on a real machine; a fake tree in tests).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            prev_cpu: None,
        }
    }

    /// Reads everything once.
    pub fn read(&mut self) -> Reading {
        let cpu = read(&self.root.join("proc/stat")).and_then(|s| parse_cpu_times(&s));
        let cpu_usage_ratio = match (self.prev_cpu, cpu) {
            (Some(p), Some(n)) => cpu_usage(p, n),
            _ => None,
        };
        if cpu.is_some() {
            self.prev_cpu = cpu;
        }
        let mem = read(&self.root.join("proc/meminfo")).and_then(|s| parse_meminfo(&s));
        Reading {
            cpu_usage_ratio,
            memory_used_bytes: mem.map(|m| m.0),
            memory_total_bytes: mem.map(|m| m.1),
            temperatures: self.temperatures(),
            throttle_events: self.throttle_events(),
        }
    }

    fn temperatures(&self) -> Vec<Temperature> {
        let mut out = Vec::new();
        // /sys/class/thermal/thermal_zone*/{type,temp} (millidegrees).
        for zone in sorted_dir(&self.root.join("sys/class/thermal")) {
            let name = name_of(&zone);
            if !name.starts_with("thermal_zone") {
                continue;
            }
            if let Some(t) = read(&zone.join("temp")).and_then(|t| t.trim().parse::<f64>().ok()) {
                let kind = read(&zone.join("type")).unwrap_or_default();
                out.push(Temperature {
                    sensor: format!("{name}/{}", kind.trim()),
                    celsius: t / 1000.0,
                });
            }
        }
        // /sys/class/hwmon/hwmon*/{name,temp*_input,temp*_label}.
        for hw in sorted_dir(&self.root.join("sys/class/hwmon")) {
            let chip = read(&hw.join("name")).unwrap_or_default();
            for f in sorted_dir(&hw) {
                let file = name_of(&f);
                let Some(idx) = file
                    .strip_prefix("temp")
                    .and_then(|r| r.strip_suffix("_input"))
                else {
                    continue;
                };
                let Some(t) = read(&f).and_then(|t| t.trim().parse::<f64>().ok()) else {
                    continue;
                };
                let label = read(&hw.join(format!("temp{idx}_label")))
                    .map_or_else(|| format!("temp{idx}"), |l| l.trim().to_owned());
                out.push(Temperature {
                    sensor: format!("{}/{}/{label}", name_of(&hw), chip.trim()),
                    celsius: t / 1000.0,
                });
            }
        }
        out
    }

    fn throttle_events(&self) -> Option<u64> {
        let mut sum = None;
        for cpu in sorted_dir(&self.root.join("sys/devices/system/cpu")) {
            let dir = cpu.join("thermal_throttle");
            for f in ["core_throttle_count", "package_throttle_count"] {
                if let Some(n) = read(&dir.join(f)).and_then(|t| t.trim().parse::<u64>().ok()) {
                    sum = Some(sum.unwrap_or(0) + n);
                }
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_a_fake_linux_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(
            r,
            "proc/stat",
            "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n",
        );
        write(
            r,
            "proc/meminfo",
            "MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    250 kB\n",
        );
        write(r, "sys/class/thermal/thermal_zone0/temp", "45500\n");
        write(r, "sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
        write(r, "sys/class/hwmon/hwmon1/name", "coretemp\n");
        write(r, "sys/class/hwmon/hwmon1/temp2_input", "51000\n");
        write(r, "sys/class/hwmon/hwmon1/temp2_label", "Core 0\n");
        write(
            r,
            "sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count",
            "3\n",
        );
        write(
            r,
            "sys/devices/system/cpu/cpu1/thermal_throttle/core_throttle_count",
            "4\n",
        );
        let mut reader = SystemReader::new(r);
        let first = reader.read();
        assert_eq!(first.cpu_usage_ratio, None, "needs two readings");
        assert_eq!(first.memory_used_bytes, Some(750 * 1024));
        assert_eq!(first.memory_total_bytes, Some(1000 * 1024));
        assert_eq!(first.throttle_events, Some(7));
        assert_eq!(
            first.temperatures,
            vec![
                Temperature {
                    sensor: "thermal_zone0/x86_pkg_temp".into(),
                    celsius: 45.5
                },
                Temperature {
                    sensor: "hwmon1/coretemp/Core 0".into(),
                    celsius: 51.0
                },
            ]
        );
        // 100 more busy jiffies and 100 more idle ones: 50 % busy.
        write(r, "proc/stat", "cpu  150 0 150 900 0 0 0 0 0 0\n");
        assert_eq!(reader.read().cpu_usage_ratio, Some(0.5));
    }

    #[test]
    fn missing_files_are_none_not_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let got = SystemReader::new(tmp.path()).read();
        assert_eq!(got, Reading::default());
        assert_eq!(parse_cpu_times("cpu 1 2"), None);
        assert_eq!(parse_meminfo("MemTotal: x kB"), None);
    }

    #[test]
    fn the_real_machine_reads_without_panicking() {
        let mut r = SystemReader::new("/");
        let _ = r.read();
        let second = r.read();
        if let Some(c) = second.cpu_usage_ratio {
            assert!((0.0..=1.0).contains(&c));
        }
    }
}
