//! One blocking Kafka connection: frames built and parsed by kafka-protocol.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Responses larger than this are refused rather than allocated.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

pub struct Conn {
    addr: String,
    stream: TcpStream,
    correlation_id: i32,
    /// Correlation id of the last request answered.
    answered: i32,
}

impl Conn {
    pub fn connect(addr: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        // A broker that stops answering fails the case instead of hanging the suite.
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Conn { addr: addr.to_string(), stream, correlation_id: 0, answered: 0 })
    }

    pub fn send<R>(&mut self, request: &R, version: i16) -> Result<R::Response>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion,
    {
        self.write(request, version)?;
        self.read::<R>(version)
    }

    /// Sends a request without waiting for its answer (e.g. a JoinGroup that
    /// blocks until the rebalance completes); `read` collects it later.
    pub fn write<R>(&mut self, request: &R, version: i16) -> Result<()>
    where
        R: Request + Encodable + HeaderVersion,
    {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("runnel-conformance")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).context("encoding the request header")?;
        request.encode(&mut body, version).with_context(|| format!("encoding api {} v{version}", R::KEY))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(i32::try_from(body.len()).context("request too large")?);
        frame.put_slice(&body);
        self.stream.write_all(&frame).with_context(|| format!("sending to {}", self.addr))?;
        Ok(())
    }

    /// Reads the answer to the oldest unanswered request.
    pub fn read<R>(&mut self, version: i16) -> Result<R::Response>
    where
        R: Request,
        R::Response: Decodable + HeaderVersion,
    {
        self.answered += 1;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .with_context(|| format!("reading api {} v{version} response from {}", R::KEY, self.addr))?;
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > MAX_RESPONSE_BYTES {
            bail!("{} sent a response of {size} bytes", self.addr);
        }
        let mut buf = vec![0u8; size as usize];
        self.stream.read_exact(&mut buf).with_context(|| format!("reading from {}", self.addr))?;
        let mut buf = Bytes::from(buf);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .context("decoding the response header")?;
        if header.correlation_id != self.answered {
            bail!("expected the answer to request {}, got {}", self.answered, header.correlation_id);
        }
        R::Response::decode(&mut buf, version).with_context(|| format!("decoding api {} v{version} response", R::KEY))
    }
}
