//! Apache Kafka 4.3, the reference, as a side-by-side system: started by
//! `scripts/kafka.sh` (fetched from Maven Central, KRaft, one combined node)
//! in two variants, one after the other (the machine has two cores):
//!
//! - `kafka`: Kafka's defaults. acks=all waits for the one replica's log
//!   write, which Kafka leaves to the OS to flush: not fsynced, unlike
//!   Runnel's acks=all.
//! - `kafka-fsync`: `log.flush.interval.messages=1`, the broker default of the
//!   topic config `flush.messages`, so Kafka fsyncs the log on every append
//!   before it answers: Kafka's durable setting, the one comparable to
//!   Runnel's acks=all.
//!
//! Both run with the heap and GC options of Kafka's own start scripts
//! (`kafka-server-start.sh` sets -Xmx1G -Xms1G; `kafka-run-class.sh` adds the
//! G1 options), not the smaller heap scripts/kafka.sh uses for tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The JVM options of Kafka's start scripts (KAFKA_HEAP_OPTS and
/// KAFKA_JVM_PERFORMANCE_OPTS; kafka.sh adds -XX:+UseG1GC and headless).
pub const JVM_OPTIONS: &str = "-Xmx1G -Xms1G -server -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent";

pub struct Variant {
    /// The system name in the report.
    pub system: &'static str,
    /// The scripts/kafka.sh instance name (its directory under target/kafka).
    instance: &'static str,
    /// Extra server.properties lines.
    settings: &'static [&'static str],
}

pub const DEFAULTS: Variant = Variant { system: "kafka", instance: "bench", settings: &[] };
pub const FSYNC: Variant = Variant { system: "kafka-fsync", instance: "bench-fsync", settings: &["log.flush.interval.messages=1"] };

pub struct KafkaServer {
    pub port: u16,
    /// The broker JVM's pid, for its resident memory.
    pub pid: u32,
    script: PathBuf,
    instance: &'static str,
}

impl Drop for KafkaServer {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).args(["stop", "--name", self.instance]).stdin(Stdio::null()).status();
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script() -> PathBuf {
    repo_root().join("scripts/kafka.sh")
}

/// Fetches Kafka and its tools from Maven Central (cached); returns the
/// directory of its jars.
pub fn install() -> Result<PathBuf> {
    let script = script();
    let status =
        Command::new(&script).arg("install").stdin(Stdio::null()).status().with_context(|| format!("running {} install", script.display()))?;
    if !status.success() {
        bail!("{} install failed ({status})", script.display());
    }
    Ok(repo_root().join("target/kafka/libs"))
}

pub fn start(variant: &Variant) -> Result<KafkaServer> {
    let script = script();
    eprintln!("[{}] starting Apache Kafka with {} ({})", variant.system, script.display(), variant.settings.join(" "));
    let mut command = Command::new(&script);
    command.args(["start", "--name", variant.instance]);
    for setting in variant.settings {
        command.args(["--set", setting]);
    }
    let output = command
        .env("KAFKA_HEAP", JVM_OPTIONS)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} start failed ({})", script.display(), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let bootstrap = stdout.lines().last().unwrap_or("").trim().to_string();
    let port =
        bootstrap.rsplit(':').next().and_then(|p| p.parse().ok()).with_context(|| format!("kafka.sh printed no bootstrap address: {stdout:?}"))?;
    let pid = read_pid(&repo_root().join("target/kafka").join(variant.instance).join("node-1/pid"))?;
    Ok(KafkaServer { port, pid, script, instance: variant.instance })
}

fn read_pid(path: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading Kafka's pid from {}", path.display()))?;
    text.trim().parse().with_context(|| format!("{} holds no pid: {text:?}", path.display()))
}
