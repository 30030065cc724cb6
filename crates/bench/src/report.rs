//! Result rows, the printed table, and the JSON file compared run to run.

use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::Args;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub system: String,
    pub workload: String,
    pub messages: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    /// Latency percentiles in milliseconds (None where the workload has no latency).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
}

impl Row {
    pub fn new(system: &str, workload: String, messages: u64, bytes: u64, seconds: f64, latency: Option<&Histogram<u64>>) -> Row {
        let secs = seconds.max(1e-9);
        let pct = |q: f64| latency.filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(q) as f64 / 1000.0);
        Row {
            system: system.to_string(),
            workload,
            messages,
            seconds,
            msgs_per_sec: messages as f64 / secs,
            mb_per_sec: bytes as f64 / secs / 1e6,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            p999_ms: pct(0.999),
        }
    }

    pub fn summary(&self) -> String {
        let lat = match (self.p50_ms, self.p99_ms, self.p999_ms) {
            (Some(a), Some(b), Some(c)) => {
                format!(", p50 {a:.2} ms, p99 {b:.2} ms, p99.9 {c:.2} ms")
            }
            _ => String::new(),
        };
        format!("{:.0} msg/s, {:.1} MB/s{lat}", self.msgs_per_sec, self.mb_per_sec)
    }

    fn key(&self) -> String {
        format!("{} | {}", self.system, self.workload)
    }
}

/// Latency histogram in microseconds, 1 µs .. 60 s.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

/// A broker's memory after its workloads, from /proc/<pid>/status, in MB (10^6 bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    pub system: String,
    /// VmRSS: resident set size after the run.
    pub rss_mb: f64,
    /// RssAnon: the anonymous part of it (heap), without mapped files.
    pub rss_anon_mb: f64,
    /// VmHWM: the peak resident set size.
    pub peak_rss_mb: f64,
    /// How the process was configured where it matters (e.g. the JVM heap).
    pub note: String,
}

impl Memory {
    /// Reads the memory of process `pid` (Linux only).
    pub fn of_process(system: &str, pid: u32, note: &str) -> Result<Memory> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kb = |field: &str| -> Result<f64> {
            let line = status.lines().find(|l| l.starts_with(field)).with_context(|| format!("{path} has no {field}"))?;
            let number = line[field.len()..].trim().trim_end_matches("kB").trim();
            number.parse::<f64>().with_context(|| format!("{path}: {line:?}"))
        };
        Ok(Memory {
            system: system.to_string(),
            rss_mb: kb("VmRSS:")? * 1024.0 / 1e6,
            rss_anon_mb: kb("RssAnon:")? * 1024.0 / 1e6,
            peak_rss_mb: kb("VmHWM:")? * 1024.0 / 1e6,
            note: note.to_string(),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub machine: String,
    pub messages: usize,
    pub rows: Vec<Row>,
    #[serde(default)]
    pub memory: Vec<Memory>,
    /// /proc/loadavg (1, 5, 15 minutes) when the run started and ended: the
    /// load generator shares the machine with whatever else runs on it.
    #[serde(default)]
    pub load_average: Vec<String>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

impl Report {
    pub fn new(args: &Args) -> Report {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        Report { machine: format!("{cores} cores"), messages: args.messages, rows: Vec::new(), memory: Vec::new(), load_average: vec![load_average()] }
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Prints the table (with the change against the previous run) and writes the JSON.
    pub fn finish(&mut self, out: &Path) -> Result<()> {
        self.load_average.push(load_average());
        let previous: Option<Report> = std::fs::read(out).ok().and_then(|b| serde_json::from_slice(&b).ok());
        println!();
        println!("| system | workload | msg/s | MB/s | p50 ms | p99 ms | p99.9 ms | vs previous |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
            let change = previous
                .as_ref()
                .and_then(|p| p.rows.iter().find(|r| r.key() == row.key()))
                .filter(|p| p.msgs_per_sec > 0.0)
                .map(|p| format!("{:+.1}%", (row.msgs_per_sec / p.msgs_per_sec - 1.0) * 100.0))
                .unwrap_or_else(|| "–".into());
            println!(
                "| {} | {} | {:.0} | {:.1} | {} | {} | {} | {} |",
                row.system,
                row.workload,
                row.msgs_per_sec,
                row.mb_per_sec,
                f(row.p50_ms),
                f(row.p99_ms),
                f(row.p999_ms),
                change
            );
        }
        self.print_ratios();
        self.print_memory();
        println!();
        println!("Load average (1, 5, 15 min) at the start: {}; at the end: {}", self.load_average[0], self.load_average.last().map(String::as_str).unwrap_or("unknown"));
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if previous.is_some() {
            let prev_path = out.with_extension("previous.json");
            let _ = std::fs::copy(out, &prev_path);
        }
        std::fs::write(out, serde_json::to_vec_pretty(self)?).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("\nresults written to {}", out.display());
        Ok(())
    }
}

impl Report {
    /// The same workload on another Kafka-protocol system: Runnel's
    /// throughput ratio to it (> 1: Runnel faster) and, where both have
    /// latencies, their p99s side by side.
    fn print_ratios(&self) {
        let lines: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !NOT_COMPARED.contains(&r.system.as_str()))
            .filter_map(|other| {
                // A broker's fixed-rate run at Runnel's rate compares with Runnel's own-peak run.
                let counterpart = other.workload.replace(&format!("({RUNNEL_RATE})"), &format!("({OWN_PEAK})"));
                let ours = self.rows.iter().find(|r| r.system == "runnel" && r.workload == counterpart)?;
                if other.msgs_per_sec <= 0.0 {
                    return None;
                }
                let p99 = match (ours.p99_ms, other.p99_ms) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{a:.2} | {b:.2} | {:.2}", a / b),
                    _ => "– | – | –".to_string(),
                };
                Some(format!(
                    "| {} | {} | {:.0} | {:.0} | {:.2}x | {p99} |",
                    other.workload,
                    other.system,
                    ours.msgs_per_sec,
                    other.msgs_per_sec,
                    ours.msgs_per_sec / other.msgs_per_sec
                ))
            })
            .collect();
        if lines.is_empty() {
            return;
        }
        println!();
        println!("| workload | vs | runnel msg/s | other msg/s | runnel / other | runnel p99 ms | other p99 ms | p99 runnel / other |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for line in lines {
            println!("{line}");
        }
    }

    fn print_memory(&self) {
        if self.memory.is_empty() {
            return;
        }
        let ours = self.memory.iter().find(|m| m.system == "runnel").map(|m| m.rss_mb);
        println!();
        println!("| system | RSS after the run MB | of which anonymous MB | peak RSS MB | runnel RSS / this | configuration |");
        println!("|---|---:|---:|---:|---:|---|");
        for m in &self.memory {
            let ratio = ours.filter(|_| m.rss_mb > 0.0).map(|r| format!("{:.3}", r / m.rss_mb)).unwrap_or_else(|| "–".into());
            println!("| {} | {:.1} | {:.1} | {:.1} | {ratio} | {} |", m.system, m.rss_mb, m.rss_anon_mb, m.peak_rss_mb, m.note);
        }
    }
}

/// How the fixed-rate runs choose their rate: each broker at half its own
/// acks=all peak, and the others also at Runnel's rate when they can sustain it.
pub const OWN_PEAK: &str = "50 % of own peak";
pub const RUNNEL_RATE: &str = "Runnel's rate";

/// Runnel itself, and systems that do not speak Kafka's protocol.
const NOT_COMPARED: [&str; 3] = ["runnel", "redis", "machine"];
