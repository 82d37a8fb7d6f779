//! Readings of the machine and process for `/health/detailed`: CPU, memory, disk, and
//! build/platform facts. Linux `/proc` based; a reading that cannot be taken is `None`
//! rather than a guess.

use std::{fs, path::Path, time::Duration};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct HostReadings {
    pub cpu_percent: Option<f64>,
    pub load_average: Option<[f64; 3]>,
    pub cpus: usize,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub memory_percent: Option<f64>,
    pub process_rss_bytes: Option<u64>,
    pub disk_path: String,
    pub disk_total_bytes: Option<u64>,
    pub disk_available_bytes: Option<u64>,
    pub disk_percent: Option<f64>,
}

/// Takes the readings; CPU use is sampled over `cpu_window`.
pub async fn read(disk_path: &Path, cpu_window: Duration) -> HostReadings {
    let before = cpu_times();
    tokio::time::sleep(cpu_window).await;
    let after = cpu_times();
    let cpu_percent = before
        .zip(after)
        .and_then(|((idle0, total0), (idle1, total1))| {
            let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
            let idle = idle1.saturating_sub(idle0);
            Some(round1(
                100.0 * (total - idle.min(total)) as f64 / total as f64,
            ))
        });
    let meminfo = fs::read_to_string("/proc/meminfo").ok();
    let mem_kib = |key: &str| meminfo.as_deref().and_then(|text| field_kib(text, key));
    let memory_total_bytes = mem_kib("MemTotal:").map(|k| k * 1024);
    let memory_available_bytes = mem_kib("MemAvailable:").map(|k| k * 1024);
    let (disk_total_bytes, disk_available_bytes) = disk_space(disk_path).unzip();
    HostReadings {
        cpu_percent,
        load_average: load_average(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_percent: used_percent(memory_total_bytes, memory_available_bytes),
        memory_total_bytes,
        memory_available_bytes,
        process_rss_bytes: process_rss_bytes(),
        disk_path: disk_path.display().to_string(),
        disk_percent: used_percent(disk_total_bytes, disk_available_bytes),
        disk_total_bytes,
        disk_available_bytes,
    }
}

/// This process's resident memory.
pub fn process_rss_bytes() -> Option<u64> {
    field_kib(&fs::read_to_string("/proc/self/status").ok()?, "VmRSS:").map(|k| k * 1024)
}

/// Build and platform facts.
pub fn build_and_platform() -> serde_json::Value {
    let read_trimmed = |path: &str| fs::read_to_string(path).ok().map(|s| s.trim().to_owned());
    serde_json::json!({
        "build": {
            "version": env!("CARGO_PKG_VERSION"),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "rust_edition": "2024",
        },
        "platform": {
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "kernel": read_trimmed("/proc/sys/kernel/osrelease"),
            "hostname": read_trimmed("/proc/sys/kernel/hostname"),
            "pid": std::process::id(),
        },
    })
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn used_percent(total: Option<u64>, available: Option<u64>) -> Option<f64> {
    let (total, available) = (total.filter(|t| *t > 0)?, available?);
    Some(round1(
        100.0 * total.saturating_sub(available) as f64 / total as f64,
    ))
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (idle, total) jiffies across all CPUs.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let values: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // idle + iowait count as idle time.
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((idle, values.iter().sum()))
}

fn load_average() -> Option<[f64; 3]> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let mut parts = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([parts.next()??, parts.next()??, parts.next()??])
}

/// (total, available) bytes of the filesystem holding `path` (or its nearest existing
/// ancestor: the data directory may not exist yet).
fn disk_space(path: &Path) -> Option<(u64, u64)> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    let existing = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    let stats = nix::sys::statvfs::statvfs(existing).ok()?;
    let fragment = stats.fragment_size();
    Some((
        stats.blocks() * fragment,
        stats.blocks_available() * fragment,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn readings_are_plausible_on_linux() {
        let readings = read(Path::new("does/not/exist/yet"), Duration::from_millis(20)).await;
        assert!(readings.process_rss_bytes.unwrap() > 0);
        assert!(readings.memory_total_bytes.unwrap() > 0);
        let disk = readings.disk_percent.unwrap();
        assert!((0.0..=100.0).contains(&disk));
        assert!(
            readings
                .cpu_percent
                .is_some_and(|c| (0.0..=100.0).contains(&c))
        );
    }
}
