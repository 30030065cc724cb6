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
            (Some(a), Some(b), Some(c)) => format!(", p50 {a:.2} ms, p99 {b:.2} ms, p99.9 {c:.2} ms"),
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

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub machine: String,
    pub messages: usize,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn new(args: &Args) -> Report {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        Report { machine: format!("{cores} cores"), messages: args.messages, rows: Vec::new() }
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Prints the table (with the change against the previous run) and writes the JSON.
    pub fn finish(&self, out: &Path) -> Result<()> {
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
        // Same workload on another Kafka-compatible system: Runnel's ratio to it.
        let ratios: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.system != "runnel" && r.system != "redis" && r.system != "machine")
            .filter_map(|other| {
                let ours = self.rows.iter().find(|r| r.system == "runnel" && r.workload == other.workload)?;
                (other.msgs_per_sec > 0.0).then(|| format!("| {} | runnel / {} = {:.2}x |", other.workload, other.system, ours.msgs_per_sec / other.msgs_per_sec))
            })
            .collect();
        if !ratios.is_empty() {
            println!();
            println!("| workload | throughput ratio |");
            println!("|---|---:|");
            for line in ratios {
                println!("{line}");
            }
        }
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
