//! Kafka's own benchmark tools, the ones Kafka users reach for first:
//! `kafka-producer-perf-test` and `kafka-consumer-perf-test` (main classes
//! `org.apache.kafka.tools.ProducerPerformance` / `ConsumerPerformance` from
//! the kafka-tools jar that scripts/kafka.sh fetches), run with the same
//! arguments against every Kafka-protocol broker in the run and parsed into rows.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::report::Row;

/// The heap the tools' wrapper scripts give them (kafka-producer-perf-test.sh
/// and kafka-consumer-perf-test.sh set KAFKA_HEAP_OPTS=-Xmx512M).
const TOOL_HEAP: &str = "-Xmx512M";
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Tools {
    libs: PathBuf,
    log_config: PathBuf,
}

impl Tools {
    /// `libs`: the directory of Kafka's jars; `work_dir`: where the tools'
    /// logging config is written (warnings to stderr, so stdout holds only results).
    pub fn new(libs: PathBuf, work_dir: &Path) -> Result<Tools> {
        std::fs::create_dir_all(work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
        let log_config = work_dir.join("tools-log4j2.properties");
        std::fs::write(
            &log_config,
            "rootLogger.level = WARN\nrootLogger.appenderRef.stderr.ref = STDERR\nappender.stderr.type = Console\n\
             appender.stderr.name = STDERR\nappender.stderr.target = SYSTEM_ERR\nappender.stderr.layout.type = PatternLayout\n\
             appender.stderr.layout.pattern = [%d] %p %m (%c)%n\n",
        )
        .with_context(|| format!("writing {}", log_config.display()))?;
        Ok(Tools { libs, log_config })
    }

    /// Runs one tool's main class; returns its stdout. Bounded by TOOL_TIMEOUT.
    fn run(&self, main_class: &str, args: &[String]) -> Result<String> {
        let mut child = Command::new("java")
            .arg(TOOL_HEAP)
            .args(["-XX:+UseG1GC", "-Djava.awt.headless=true"])
            .arg(format!("-Dlog4j2.configurationFile={}", self.log_config.display()))
            .arg("-cp")
            .arg(self.libs.join("*"))
            .arg(main_class)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting java {main_class}"))?;
        let mut stdout = child.stdout.take().context("tool stdout")?;
        let mut stderr = child.stderr.take().context("tool stderr")?;
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + TOOL_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{main_class} did not finish within {TOOL_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = out_reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        if !status.success() {
            bail!("{main_class} failed ({status}): {}{}", last_lines(&out, 5), last_lines(&err, 10));
        }
        Ok(out)
    }

    /// kafka-producer-perf-test: `count` records of `size` bytes, unthrottled,
    /// acks=all, the tool's other producer settings left at their defaults.
    pub fn producer_perf(&self, bootstrap: &str, topic: &str, partitions: i32, size: usize, count: usize, system: &str) -> Result<Row> {
        let args: Vec<String> = [
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--num-records",
            &count.to_string(),
            "--record-size",
            &size.to_string(),
            "--throughput",
            "-1",
            "--command-property",
            "acks=all",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = self.run("org.apache.kafka.tools.ProducerPerformance", &args)?;
        let summary = parse_producer_summary(&out).with_context(|| format!("kafka-producer-perf-test output: {}", last_lines(&out, 5)))?;
        if summary.records < count as u64 {
            bail!("kafka-producer-perf-test sent {} of {count} records", summary.records);
        }
        let workload = format!("kafka-producer-perf-test {size} B, {partitions}p, acks=all");
        Ok(row(system, workload, summary.records, size, summary.records_per_sec, Some(summary.percentiles_ms)))
    }

    /// kafka-consumer-perf-test: reads `count` records of `topic` in a new
    /// group. The rate is the tool's fetch.nMsg.sec, which leaves out the
    /// group join (rebalance.time.ms).
    pub fn consumer_perf(&self, bootstrap: &str, topic: &str, partitions: i32, size: usize, count: usize, system: &str) -> Result<Row> {
        let group = format!("perf-consumer-{}-{}", std::process::id(), topic);
        let args: Vec<String> =
            ["--bootstrap-server", bootstrap, "--topic", topic, "--num-records", &count.to_string(), "--group", &group, "--timeout", "60000"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let out = self.run("org.apache.kafka.tools.ConsumerPerformance", &args)?;
        let stats = parse_consumer_stats(&out).with_context(|| format!("kafka-consumer-perf-test output: {}", last_lines(&out, 5)))?;
        let field = |name: &str| -> Result<f64> {
            let text = stats.get(name).with_context(|| format!("kafka-consumer-perf-test printed no {name}"))?;
            text.trim().parse().with_context(|| format!("kafka-consumer-perf-test {name} is {text:?}"))
        };
        let consumed = field("data.consumed.in.nMsg")? as u64;
        if consumed < count as u64 {
            bail!("kafka-consumer-perf-test consumed {consumed} of {count} records");
        }
        let workload = format!("kafka-consumer-perf-test {size} B, {partitions}p");
        Ok(row(system, workload, consumed, size, field("fetch.nMsg.sec")?, None))
    }
}

fn row(system: &str, workload: String, records: u64, size: usize, records_per_sec: f64, percentiles_ms: Option<[f64; 3]>) -> Row {
    Row {
        system: system.to_string(),
        workload,
        messages: records,
        seconds: if records_per_sec > 0.0 { records as f64 / records_per_sec } else { 0.0 },
        msgs_per_sec: records_per_sec,
        mb_per_sec: records_per_sec * size as f64 / 1e6,
        p50_ms: percentiles_ms.map(|p| p[0]),
        p99_ms: percentiles_ms.map(|p| p[1]),
        p999_ms: percentiles_ms.map(|p| p[2]),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[derive(Debug, PartialEq)]
struct ProducerSummary {
    records: u64,
    records_per_sec: f64,
    /// p50, p99, p99.9 in milliseconds.
    percentiles_ms: [f64; 3],
}

/// The tool's final line, e.g. "300000 records sent, 95602.1 records/sec
/// (93.36 MB/sec), 250.66 ms avg latency, 573.00 ms max latency, 243 ms 50th,
/// 457 ms 95th, 534 ms 99th, 569 ms 99.9th."
fn parse_producer_summary(out: &str) -> Result<ProducerSummary> {
    let line = out.lines().rev().find(|l| l.contains(" records sent, ")).context("no \"records sent\" summary line")?;
    let mut records = None;
    let mut records_per_sec = None;
    let mut percentiles = HashMap::new();
    for part in line.trim_end_matches('.').split(", ") {
        let mut words = part.split_whitespace();
        let (Some(number), Some(unit)) = (words.next(), words.next()) else {
            continue;
        };
        let value: f64 = match number.parse() {
            Ok(v) => v,
            Err(_) => continue,
        };
        match (unit, words.next()) {
            ("records", Some("sent")) => records = Some(value as u64),
            ("records/sec", _) => records_per_sec = Some(value),
            ("ms", Some(pct @ ("50th" | "99th" | "99.9th"))) => {
                percentiles.insert(pct, value);
            }
            _ => {}
        }
    }
    let pct = |name: &str| percentiles.get(name).copied().with_context(|| format!("no {name} percentile in {line:?}"));
    Ok(ProducerSummary {
        records: records.with_context(|| format!("no record count in {line:?}"))?,
        records_per_sec: records_per_sec.with_context(|| format!("no records/sec in {line:?}"))?,
        percentiles_ms: [pct("50th")?, pct("99th")?, pct("99.9th")?],
    })
}

/// The header line ("start.time, end.time, data.consumed.in.MB, ...") and the
/// values line after it, as name → value.
fn parse_consumer_stats(out: &str) -> Result<HashMap<String, String>> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("start.time"));
    let header = lines.next().context("no start.time header line")?;
    let values = lines.find(|l| !l.trim().is_empty()).context("no values line after the header")?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let fields: Vec<&str> = values.split(',').map(str::trim).collect();
    if names.len() != fields.len() {
        bail!("{} names but {} values", names.len(), fields.len());
    }
    Ok(names.into_iter().zip(fields).map(|(n, v)| (n.to_string(), v.to_string())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_summary_is_parsed() {
        let out = "100 records sent, 20.0 records/sec (0.02 MB/sec), 5.0 ms avg latency, 9.0 ms max latency.\n\
                   300000 records sent, 95602.1 records/sec (93.36 MB/sec), 250.66 ms avg latency, 573.00 ms max latency, 243 ms 50th, 457 ms 95th, 534 ms 99th, 569 ms 99.9th.\n";
        let summary = parse_producer_summary(out).unwrap();
        assert_eq!(summary, ProducerSummary { records: 300000, records_per_sec: 95602.1, percentiles_ms: [243.0, 534.0, 569.0] });
    }

    #[test]
    fn producer_summary_without_percentiles_is_an_error() {
        let out = "100 records sent, 20.0 records/sec (0.02 MB/sec), 5.0 ms avg latency, 9.0 ms max latency.\n";
        assert!(parse_producer_summary(out).is_err());
    }

    #[test]
    fn consumer_stats_are_parsed() {
        let out = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                   2026-11-30 03:40:00:123, 2026-11-30 03:40:05:123, 292.9688, 58.5938, 300000, 60000.0000, 3012, 1988, 147.3686, 150905.4326\n";
        let stats = parse_consumer_stats(out).unwrap();
        assert_eq!(stats["data.consumed.in.nMsg"], "300000");
        assert_eq!(stats["fetch.nMsg.sec"], "150905.4326");
    }
}
