//! Kafka-protocol workloads driven by librdkafka: produce-only, catch-up
//! consume, and a fixed-rate run measuring end-to-end latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::report::{latency_histogram, Row};

const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);

struct AckLatency {
    histogram: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for AckLatency {}

impl ProducerContext for AckLatency {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                let micros = sent_at.elapsed().as_micros().max(1) as u64;
                if let Ok(mut h) = self.histogram.lock() {
                    let _ = h.record(micros.min(60_000_000));
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Where a workload connects: the bootstrap address, and the librdkafka
/// settings that listener needs (`security.protocol=SSL`, its CA, ...).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub bootstrap: String,
    pub settings: Vec<(String, String)>,
}

impl Endpoint {
    pub fn plaintext(bootstrap: String) -> Endpoint {
        Endpoint { bootstrap, settings: Vec::new() }
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        config
    }
}

pub fn create_topic(endpoint: &Endpoint, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = endpoint.config().create().context("admin client")?;
    let results =
        block_on(async { admin.create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new()).await })?;
    for result in results {
        if let Err((name, code)) = result {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                bail!("creating topic {name}: {code}");
            }
        }
    }
    wait_for_leaders(&admin, topic, partitions)
}

/// Waits until metadata lists every partition of `topic` with a leader.
/// Kafka answers CreateTopics before its metadata cache has the topic, and a
/// consumer that assigns partitions from that first answer gets none (the
/// fixed-rate run against Kafka consumed nothing); Runnel is ready at once.
fn wait_for_leaders(admin: &AdminClient<DefaultClientContext>, topic: &str, partitions: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(5)).context("metadata")?;
        let ready = metadata.topics().iter().find(|t| t.name() == topic).is_some_and(|t| {
            t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none())
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("topic {topic}: {partitions} partition(s) with a leader not in metadata after 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// rdkafka's admin futures are completed by librdkafka's own threads, so a
/// polling loop with a no-op waker is enough to wait for one.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context as TaskContext, Poll, RawWaker, RawWakerVTable, Waker};
    fn noop_raw() -> RawWaker {
        fn clone(_: *const ()) -> RawWaker {
            noop_raw()
        }
        fn noop(_: *const ()) {}
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    // SAFETY: the vtable's functions do nothing and never touch the data pointer.
    let waker = unsafe { Waker::from_raw(noop_raw()) };
    let mut cx = TaskContext::from_waker(&waker);
    let mut fut = Box::pin(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `max_in_flight`: produce requests in flight per connection; librdkafka's
/// default is 1000000.
fn producer(endpoint: &Endpoint, acks: &str, linger_ms: &str, max_in_flight: &str) -> Result<ThreadedProducer<AckLatency>> {
    let context = AckLatency { histogram: Mutex::new(latency_histogram()), delivered: AtomicU64::new(0), failed: AtomicU64::new(0) };
    endpoint
        .config()
        .set("acks", acks)
        .set("linger.ms", linger_ms)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", max_in_flight)
        .create_with_context(context)
        .context("creating producer")
}

fn send_blocking(producer: &ThreadedProducer<AckLatency>, topic: &str, value: &[u8]) -> Result<()> {
    let mut record = BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now())).payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => return Err(anyhow!("produce failed: {e}")),
        }
    }
}

/// Produces `count` records of `size` bytes as fast as the client can; the
/// latency is produce → acknowledgement.
pub fn produce(endpoint: &Endpoint, topic: &str, partitions: i32, size: usize, acks: &str, count: usize, system: &str) -> Result<Row> {
    create_topic(endpoint, topic, partitions)?;
    let producer = producer(endpoint, acks, "5", "1000000")?;
    let value = vec![b'x'; size];
    let started = Instant::now();
    for _ in 0..count {
        send_blocking(&producer, topic, &value)?;
    }
    producer.flush(Duration::from_secs(300)).context("flushing producer")?;
    let seconds = started.elapsed().as_secs_f64();
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} of {count} records failed");
    }
    let histogram = context.histogram.lock().map_err(|_| anyhow!("latency histogram poisoned"))?.clone();
    let workload = format!("produce {size} B, {partitions}p, acks={acks}");
    Ok(Row::new(system, workload, count as u64, (count * size) as u64, seconds, Some(&histogram)))
}

fn consumer(endpoint: &Endpoint) -> Result<BaseConsumer> {
    endpoint
        .config()
        .set("group.id", format!("bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .context("creating consumer")
}

fn assign_all(consumer: &BaseConsumer, topic: &str, offset: Offset) -> Result<()> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).context("metadata")?;
    let mut list = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            list.add_partition_offset(topic, p.id(), offset).context("partition list")?;
        }
    }
    if list.count() == 0 {
        bail!("metadata lists no partitions of {topic}: the consumer would read nothing");
    }
    consumer.assign(&list).context("assign")?;
    Ok(())
}

/// Reads `count` records of a topic from the beginning (catch-up read).
pub fn consume(endpoint: &Endpoint, topic: &str, partitions: i32, size: usize, count: usize, system: &str) -> Result<Row> {
    let consumer = consumer(endpoint)?;
    assign_all(&consumer, topic, Offset::Beginning)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    // Timed from the first record: client start-up and the first metadata and
    // offset round trips are not part of a streaming rate.
    let mut started = None;
    let mut received = 0usize;
    while received < count {
        if Instant::now() > deadline {
            bail!("catch-up read got {received} of {count} records in 300 s");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                started.get_or_insert_with(Instant::now);
                received += 1;
            }
            Some(Err(e)) => bail!("consume failed: {e}"),
            None => {}
        }
    }
    let seconds = started.map(|s| s.elapsed().as_secs_f64()).unwrap_or_default().max(1e-6);
    Ok(Row::new(system, format!("consume catch-up {size} B, {partitions}p"), count as u64, (count * size) as u64, seconds, None))
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Produces at a fixed rate with acks=all while a consumer reads. Two rows:
/// end-to-end (the record's send time, in its first 8 bytes → consumption)
/// and send → acknowledgement of the same records. `label` says how the rate
/// was chosen; the rows' msg/s column shows the rate itself.
pub fn fixed_rate(endpoint: &Endpoint, topic: &str, size: usize, rate: f64, duration: Duration, system: &str, label: &str) -> Result<Vec<Row>> {
    create_topic(endpoint, topic, 1)?;
    // linger.ms=0 sends each record at once; with librdkafka's unbounded
    // in-flight requests that is one request per record or two, and Kafka
    // serves a connection's requests one at a time (fsyncing each in the
    // kafka-fsync variant), so latency there measured the client's request
    // storm. Five in flight, the Java client's default, lets records that
    // arrive meanwhile share the next request, on every broker alike.
    let producer = producer(endpoint, "all", "0", "5")?;
    let consumer = consumer(endpoint)?;
    assign_all(&consumer, topic, Offset::Beginning)?;
    let total = ((rate * duration.as_secs_f64()) as usize).max(1);
    let received = Arc::new(AtomicU64::new(0));
    let warmed_up = Arc::new(AtomicBool::new(false));
    let reader = {
        let (received, warmed_up) = (received.clone(), warmed_up.clone());
        std::thread::spawn(move || -> Result<Histogram<u64>> {
            let mut histogram = latency_histogram();
            let deadline = Instant::now() + WARM_UP_TIMEOUT + duration + Duration::from_secs(30);
            while (received.load(Ordering::Relaxed) as usize) < total && Instant::now() < deadline {
                if let Some(message) = consumer.poll(Duration::from_millis(50)) {
                    let message = message.map_err(|e| anyhow!("consume failed: {e}"))?;
                    let sent = message.payload().and_then(|p| p.get(..8)).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
                    match sent {
                        Some(0) => warmed_up.store(true, Ordering::Relaxed),
                        Some(sent) => {
                            let _ = histogram.record(unix_micros().saturating_sub(sent).clamp(1, 60_000_000));
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        None => bail!("record without a send time in {}", message.topic()),
                    }
                }
            }
            Ok(histogram)
        })
    };
    let mut value = vec![b'x'; size.max(8)];
    // One record (send time 0) through producer, broker and consumer before
    // the clock starts: connections, metadata and the consumer's first fetch
    // position are set-up, not latency (a cold Kafka took 2 s over them).
    value[..8].copy_from_slice(&0u64.to_be_bytes());
    send_blocking(&producer, topic, &value)?;
    producer.flush(WARM_UP_TIMEOUT).context("flushing the warm-up record")?;
    let warm_up_deadline = Instant::now() + WARM_UP_TIMEOUT;
    while !warmed_up.load(Ordering::Relaxed) {
        if Instant::now() > warm_up_deadline || reader.is_finished() {
            bail!("fixed-rate run: the consumer did not receive the warm-up record within {WARM_UP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    producer.context().histogram.lock().map_err(|_| anyhow!("latency histogram poisoned"))?.reset();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        value[..8].copy_from_slice(&unix_micros().max(1).to_be_bytes());
        send_blocking(&producer, topic, &value)?;
    }
    producer.flush(Duration::from_secs(60)).context("flushing producer")?;
    let histogram = reader.join().map_err(|_| anyhow!("consumer thread panicked"))??;
    let seconds = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    if (got as usize) < total {
        bail!("fixed-rate run: consumed {got} of {total} records");
    }
    let acks = producer.context().histogram.lock().map_err(|_| anyhow!("latency histogram poisoned"))?.clone();
    let workload = format!("fixed rate ({label}) {size} B acks=all, end-to-end");
    let end_to_end = Row::new(system, workload, total as u64, (total * size) as u64, seconds, Some(&histogram));
    let workload = format!("fixed rate ({label}) {size} B acks=all, send to ack");
    let acked = Row::new(system, workload, total as u64, (total * size) as u64, seconds, Some(&acks));
    Ok(vec![end_to_end, acked])
}
