//! The machine's own limits, measured in the same run: sequential write +
//! fdatasync throughput of the data disk, and loopback TCP bandwidth
//! (iperf3, when installed). Runnel's figures read as a fraction of these.

use std::fs::OpenOptions;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::report::{latency_histogram, Row};
use crate::{free_port, wait_for_port, Args};

pub fn measure(args: &Args) -> Result<Vec<Row>> {
    let mut rows = vec![disk_fsync(64 * 1024, if args.smoke { 50 } else { 2000 })?];
    match loopback_iperf3(if args.smoke { 1 } else { 5 }) {
        Ok(row) => rows.push(row),
        Err(e) => eprintln!("[limits] loopback bandwidth not measured: {e:#}"),
    }
    Ok(rows)
}

/// Appends `block`-byte writes, each followed by fdatasync: the cost of a durable append.
fn disk_fsync(block: usize, writes: usize) -> Result<Row> {
    let dir = tempfile::Builder::new().prefix("runnel-bench-disk-").tempdir_in(".")?;
    let path = dir.path().join("fsync.dat");
    let mut file = OpenOptions::new().create(true).append(true).open(&path).context("opening disk test file")?;
    let data = vec![0x5au8; block];
    let mut histogram = latency_histogram();
    let started = Instant::now();
    for _ in 0..writes {
        let t = Instant::now();
        file.write_all(&data)?;
        file.sync_data()?;
        let _ = histogram.record((t.elapsed().as_micros() as u64).max(1));
    }
    let seconds = started.elapsed().as_secs_f64();
    let workload = format!("disk write {} KiB + fdatasync (per write)", block / 1024);
    Ok(Row::new("machine", workload, writes as u64, (writes * block) as u64, seconds, Some(&histogram)))
}

fn loopback_iperf3(seconds: u64) -> Result<Row> {
    let port = free_port()?;
    let mut server = Command::new("iperf3")
        // Not one-shot (-1): the readiness probe below would use up its only session.
        .args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 (apt-get install iperf3)")?;
    wait_for_port(port, Duration::from_secs(5))?;
    let output = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", &seconds.to_string(), "-J"])
        .output()
        .context("running iperf3 client")?;
    let _ = server.kill();
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).context("parsing iperf3 output")?;
    let bits = json["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3 result missing")?;
    let bytes = bits / 8.0 * seconds as f64;
    Ok(Row::new("machine", "loopback TCP (iperf3, 1 stream)".into(), 0, bytes as u64, seconds as f64, None))
}
