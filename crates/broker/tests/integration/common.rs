//! What the broker's TCP tests share: an in-process broker on a loopback
//! port, and a client that frames requests encoded by the kafka-protocol
//! crate and decodes their answers.
#![allow(dead_code)] // each test module uses its own part of this one

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::{RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use runnel_broker::{BrokerConfig, RunningBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for an answer before calling it missing.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// The create time of the first record of [`record_batch`]; record i has this + i.
pub const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// A broker on 127.0.0.1 (a free port) over `dir`, with Kafka broker configs.
pub async fn start_broker(dir: &std::path::Path, settings: &[(&str, &str)]) -> RunningBroker {
    let mut config = BrokerConfig::default();
    config.set("listeners", "127.0.0.1:0").expect("listeners");
    config.data_dir = dir.to_path_buf();
    for (key, value) in settings {
        config.set(key, value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
    }
    runnel_broker::start(config).await.expect("broker starts")
}

pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(s(name))
}

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        Client { stream: TcpStream::connect(addr).await.expect("connect"), correlation_id: 0 }
    }

    pub async fn send_raw(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.expect("send");
    }

    /// The next answer frame, None when the broker closed the connection or sent nothing in time.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        tokio::time::timeout(ANSWER_TIMEOUT, self.stream.read_exact(&mut len)).await.ok()?.ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.stream.read_exact(&mut buf).await.ok()?;
        Some(Bytes::from(buf))
    }

    /// Sends one request; its decoded answer, or why there was none.
    pub async fn try_request<R: Request>(&mut self, version: i16, req: &R) -> Result<R::Response, String> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(s("runnel-wire-test")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).map_err(|e| format!("test bug: request header: {e}"))?;
        req.encode(&mut body, version).map_err(|e| format!("test bug: the request does not encode: {e}"))?;
        let mut frame = BytesMut::with_capacity(4 + body.len());
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await.map_err(|e| format!("send: {e}"))?;

        let mut len = [0u8; 4];
        match tokio::time::timeout(ANSWER_TIMEOUT, self.stream.read_exact(&mut len)).await {
            Err(_) => return Err(format!("no answer within {ANSWER_TIMEOUT:?}")),
            Ok(Err(e)) => return Err(format!("connection closed instead of an answer: {e}")),
            Ok(Ok(_)) => {}
        }
        let mut buf = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.stream.read_exact(&mut buf).await.map_err(|e| format!("truncated answer: {e}"))?;
        let mut response = Bytes::from(buf);
        let header = ResponseHeader::decode(&mut response, R::Response::header_version(version)).map_err(|e| format!("response header: {e}"))?;
        if header.correlation_id != self.correlation_id {
            return Err(format!("answer carries correlation id {} instead of {}", header.correlation_id, self.correlation_id));
        }
        let decoded = R::Response::decode(&mut response, version).map_err(|e| format!("response does not decode: {e}"))?;
        if response.has_remaining() {
            return Err(format!("{} bytes left after the response", response.remaining()));
        }
        Ok(decoded)
    }

    /// Sends one request and returns its answer; panics when there is none.
    pub async fn request<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        self.try_request(version, req).await.unwrap_or_else(|e| panic!("{:?} v{version}: {e}", R::KEY))
    }
}

/// One uncompressed batch of `values`, keyed k0, k1, …, created at [`BASE_TIMESTAMP`] + i.
pub fn record_batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The crate's encoder keeps records in one batch while offset - sequence is constant.
            sequence: i as i32,
            timestamp: BASE_TIMESTAMP + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("a test batch encodes");
    buf.freeze()
}
