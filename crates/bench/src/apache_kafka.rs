//! Apache Kafka 4.3, the reference, as a side-by-side system: started by
//! `scripts/kafka.sh` (fetched from Maven Central, KRaft, one combined node,
//! 512 MB heap) under the instance name `bench`. Kafka's acks=all here waits
//! for its one replica's log write but not for an fsync (Kafka leaves flushing
//! to the OS by default), unlike Runnel's fsynced acks=all.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub struct KafkaServer {
    pub port: u16,
    script: PathBuf,
}

impl Drop for KafkaServer {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).args(["stop", "--name", "bench"]).stdin(Stdio::null()).status();
    }
}

pub fn start() -> Result<KafkaServer> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka.sh");
    eprintln!("[kafka] starting Apache Kafka with {}", script.display());
    let output = Command::new(&script)
        .args(["start", "--name", "bench"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} start failed ({})", script.display(), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let bootstrap = stdout.lines().last().unwrap_or("").trim().to_string();
    let port = bootstrap
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("kafka.sh printed no bootstrap address: {stdout:?}"))?;
    Ok(KafkaServer { port, script })
}
