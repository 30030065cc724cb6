//! runnel-conformance: sends the same request sequences to Apache Kafka and to
//! Runnel and compares the answers field by field.
//!
//! Each case (see `cases/`) runs once against each broker on a fresh
//! connection; its probes' responses are flattened (`tree.rs`), normalised for
//! what legitimately differs (ids, hosts, timestamps, messages' wording) and
//! diffed. A difference fails the case unless the allowed-differences file
//! lists it with a reason. The last line is `N passed, N failed`.

mod cases;
mod client;
mod ctx;
mod msg;
mod tree;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::ctx::{Ctx, Side};
use crate::tree::glob_match;

struct Args {
    kafka: String,
    runnel: String,
    allowed: Option<String>,
    filter: Option<String>,
    verbose: bool,
    raw: bool,
    list: bool,
    /// KEY=VALUE both brokers were started with: run only the cases that need it.
    broker_setting: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        kafka: String::new(),
        runnel: String::new(),
        allowed: None,
        filter: None,
        verbose: false,
        raw: false,
        list: false,
        broker_setting: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--kafka" => args.kafka = it.next().context("--kafka needs HOST:PORT")?,
            "--runnel" => args.runnel = it.next().context("--runnel needs HOST:PORT")?,
            "--allowed" => args.allowed = Some(it.next().context("--allowed needs a file")?),
            "--filter" => args.filter = Some(it.next().context("--filter needs a substring")?),
            "--broker-setting" => args.broker_setting = Some(it.next().context("--broker-setting needs KEY=VALUE")?),
            "--verbose" | "-v" => args.verbose = true,
            "--list" => args.list = true,
            // No normalisation: for reading what a broker really sent.
            "--raw" => args.raw = true,
            "--help" | "-h" => {
                println!(
                    "usage: runnel-conformance --kafka HOST:PORT --runnel HOST:PORT [--allowed FILE] [--filter SUBSTR] [--broker-setting KEY=VALUE] [--verbose] [--raw] [--list]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    if !args.list && (args.kafka.is_empty() || args.runnel.is_empty()) {
        bail!("--kafka and --runnel are required (see --help)");
    }
    Ok(args)
}

/// One line of the allowed-differences file.
struct Allowed {
    case: String,
    field: String,
    reason: String,
    line: usize,
    used: bool,
}

fn read_allowed(path: &str) -> Result<Vec<Allowed>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (case, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let (field, reason) = rest.trim_start().split_once(char::is_whitespace).unwrap_or((rest.trim_start(), ""));
        let reason = reason.trim();
        if field.is_empty() || reason.is_empty() {
            bail!("{path}:{}: expected `CASE FIELD REASON...`", i + 1);
        }
        entries.push(Allowed { case: case.into(), field: field.into(), reason: reason.into(), line: i + 1, used: false });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_file_needs_case_field_and_reason() {
        let dir = std::env::temp_dir().join(format!("allowed-{}", std::process::id()));
        std::fs::write(&dir, "# comment\n\nfetch.*   *.high_watermark   runnel bug, not fixed yet: x\n").unwrap();
        let entries = read_allowed(dir.to_str().unwrap()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].case.as_str(), entries[0].field.as_str()), ("fetch.*", "*.high_watermark"));
        assert_eq!(entries[0].reason, "runnel bug, not fixed yet: x");
        std::fs::write(&dir, "fetch.* *.high_watermark\n").unwrap();
        assert!(read_allowed(dir.to_str().unwrap()).is_err(), "an entry without a reason is refused");
        std::fs::remove_file(&dir).unwrap();
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("runnel-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let args = parse_args()?;
    let all = cases::all();
    let mut names = std::collections::HashSet::new();
    for case in &all {
        if !names.insert(case.name.clone()) {
            bail!("two cases are named {}", case.name);
        }
    }
    if args.list {
        for case in &all {
            match &case.requires {
                Some(setting) => println!("{} (brokers with {setting})", case.name),
                None => println!("{}", case.name),
            }
        }
        println!("{} cases", all.len());
        return Ok(true);
    }
    let mut allowed = match &args.allowed {
        Some(path) => read_allowed(path)?,
        None => Vec::new(),
    };
    // Topic and group names carry a per-run suffix, the same on both brokers,
    // so reruns against a long-lived broker start clean.
    let nonce = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() % 0xffffff);
    let versions = ctx::common_versions(&args.kafka, &args.runnel)?;
    ctx::warm_up_groups(&args.kafka)?;
    ctx::warm_up_groups(&args.runnel)?;

    let (mut passed, mut failed, mut with_allowed) = (0, 0, 0);
    // A pass runs the cases made for the brokers' settings: the default cases, or those of --broker-setting.
    let in_this_pass = |c: &&cases::Case| c.requires == args.broker_setting;
    for case in all.iter().filter(in_this_pass).filter(|c| args.filter.as_deref().is_none_or(|f| c.name.contains(f))) {
        let kafka = Ctx::run_case(case, Side::Kafka, &args.kafka, &nonce, &versions, args.raw);
        let runnel = Ctx::run_case(case, Side::Runnel, &args.runnel, &nonce, &versions, args.raw);
        if args.verbose {
            println!("--- {}", case.name);
            for (path, value) in &kafka.flat {
                let other = runnel.flat.get(path).map(String::as_str).unwrap_or("<absent>");
                println!("  {path}: {value}{}", if other == value { String::new() } else { format!("  (runnel: {other})") });
            }
        }
        let mut diffs = Vec::new();
        let paths: std::collections::BTreeSet<&String> = kafka.flat.keys().chain(runnel.flat.keys()).collect();
        for path in paths {
            let k = kafka.flat.get(path).map(String::as_str).unwrap_or("<absent>");
            let r = runnel.flat.get(path).map(String::as_str).unwrap_or("<absent>");
            if k != r {
                diffs.push((path.clone(), k.to_string(), r.to_string()));
            }
        }
        let mut unexplained = Vec::new();
        // A case that cannot run on either broker proves nothing: a suite bug.
        if !kafka.errors.is_empty() && !runnel.errors.is_empty() {
            unexplained.push("the case failed on both brokers".to_string());
        }
        for (path, k, r) in diffs.iter() {
            let entry = allowed.iter_mut().find(|a| glob_match(&a.case, &case.name) && glob_match(&a.field, path));
            match entry {
                Some(entry) => entry.used = true,
                None => unexplained.push(format!("{path}: kafka={k} runnel={r}")),
            }
        }
        if unexplained.is_empty() {
            passed += 1;
            if !diffs.is_empty() {
                with_allowed += 1;
            }
        } else {
            failed += 1;
            println!("FAIL {}: {}", case.name, unexplained.join("; "));
            for (side, errors) in [("kafka", &kafka.errors), ("runnel", &runnel.errors)] {
                for error in errors {
                    println!("     {side} error: {error}");
                }
            }
        }
    }
    if args.filter.is_none() && args.broker_setting.is_none() {
        for entry in allowed.iter().filter(|a| !a.used) {
            println!(
                "note: allowed-differences line {} ({} {}) matched nothing: remove it? ({})",
                entry.line, entry.case, entry.field, entry.reason
            );
        }
    }
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in allowed.iter().filter(|a| a.used) {
        *by_reason.entry(if entry.reason.starts_with("runnel bug") { "runnel bug (not fixed yet)" } else { "legitimate" }).or_default() += 1;
    }
    println!(
        "{with_allowed} passed case(s) differ only as allowed ({})",
        by_reason.iter().map(|(k, v)| format!("{v} entries: {k}")).collect::<Vec<_>>().join(", ")
    );
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}
