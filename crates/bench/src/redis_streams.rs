//! Redis Streams, the alternative the seed talk names: `redis-server` started
//! on a free loopback port without persistence (its default), XADD pipelined
//! in groups of 64 and XREAD COUNT 1000 for the catch-up read.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::report::Row;
use crate::{free_port, wait_for_port, Server};

const PIPELINE: usize = 64;
const STREAM: &str = "bench";

pub fn start() -> Result<Server> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server (apt-get install redis-server)")?;
    let server = Server { name: "redis", port, child, _dir: None };
    wait_for_port(port, Duration::from_secs(10))?;
    Ok(server)
}

fn connect(port: u16) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).context("redis client")?;
    client.get_connection().context("connecting to redis")
}

pub fn produce(port: u16, size: usize, count: usize) -> Result<Row> {
    let mut conn = connect(port)?;
    let _: () = redis::cmd("DEL").arg(STREAM).query(&mut conn)?;
    let value = vec![b'x'; size];
    let mut histogram = crate::report::latency_histogram();
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let n = PIPELINE.min(count - sent);
        let mut pipe = redis::pipe();
        for _ in 0..n {
            pipe.cmd("XADD").arg(STREAM).arg("*").arg("v").arg(&value[..]).ignore();
        }
        let t = Instant::now();
        let _: () = pipe.query(&mut conn).context("XADD pipeline")?;
        let _ = histogram.record((t.elapsed().as_micros() as u64).max(1));
        sent += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    let workload = format!("XADD {size} B, pipeline {PIPELINE} (latency per pipeline)");
    Ok(Row::new("redis", workload, count as u64, (count * size) as u64, seconds, Some(&histogram)))
}

pub fn consume(port: u16, size: usize, count: usize) -> Result<Row> {
    let mut conn = connect(port)?;
    let started = Instant::now();
    let mut last_id = "0-0".to_string();
    let mut received = 0usize;
    while received < count {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(&last_id)
            .query(&mut conn)
            .context("XREAD")?;
        let mut got = 0;
        for key in reply.keys {
            for entry in key.ids {
                last_id = entry.id;
                got += 1;
            }
        }
        if got == 0 {
            break;
        }
        received += got;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Row::new("redis", format!("XREAD catch-up {size} B"), received as u64, (received * size) as u64, seconds, None))
}
