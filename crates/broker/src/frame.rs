//! Response frames, and how fetched records reach the socket without being
//! copied through user space.
//!
//! A fetch response is encoded by kafka-protocol like every other response,
//! except that each partition's `records` field holds a *placeholder*: a
//! slice of [`PLACEHOLDER`] as long as the planned read. [`SplicingBuf`]
//! recognises those slices when the encoder writes them and, instead of
//! copying, cuts the frame there and inserts the log-file region. The network
//! layer then writes the encoded parts and sends the regions straight from the
//! page cache (`sendfile`). Lengths and every other field stay the encoder's.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use runnel_storage::ReadPlan;

/// Largest record region spliced in; a larger read (one oversized batch) is
/// copied into the frame instead. Zeroed static data lives in .bss: it costs
/// address space, not memory, and is never read.
pub const MAX_SPLICE: usize = 16 << 20;
static PLACEHOLDER: [u8; MAX_SPLICE] = [0; MAX_SPLICE];

/// Bytes standing in for `len` record bytes that [`SplicingBuf`] will replace.
pub fn placeholder(len: usize) -> Option<Bytes> {
    (len > 0 && len <= MAX_SPLICE).then(|| Bytes::from_static(&PLACEHOLDER[..len]))
}

/// One encoded response, ready for the connection's writer.
#[derive(Debug)]
pub enum ResponseFrame {
    /// The whole frame in memory (every response but fetches with records).
    Bytes(Bytes),
    /// Encoded bytes interleaved with log-file regions, in wire order.
    Spliced(Vec<FramePart>),
}

#[derive(Debug)]
pub enum FramePart {
    Bytes(Bytes),
    File(ReadPlan),
}

/// An encoding buffer that swaps placeholder slices for file regions.
/// Regions must be given in the order the encoder writes the placeholders
/// (response order: topics, then partitions).
pub struct SplicingBuf {
    current: BytesMut,
    parts: Vec<FramePart>,
    regions: std::vec::IntoIter<ReadPlan>,
    /// Frame bytes before `current` (encoded parts and spliced regions), so
    /// offsets match a flat encoding.
    before_current: usize,
    /// Set when a placeholder did not match the next region: a bug, reported by [`SplicingBuf::finish`].
    mismatch: bool,
}

impl SplicingBuf {
    pub fn new(capacity: usize, regions: Vec<ReadPlan>) -> SplicingBuf {
        SplicingBuf {
            current: BytesMut::with_capacity(capacity),
            parts: Vec::new(),
            regions: regions.into_iter(),
            before_current: 0,
            mismatch: false,
        }
    }

    pub fn finish(mut self) -> anyhow::Result<ResponseFrame> {
        if self.mismatch || self.regions.next().is_some() {
            anyhow::bail!("record placeholders and planned reads do not line up");
        }
        if self.parts.is_empty() {
            return Ok(ResponseFrame::Bytes(self.current.freeze()));
        }
        if !self.current.is_empty() {
            self.parts.push(FramePart::Bytes(self.current.freeze()));
        }
        Ok(ResponseFrame::Spliced(self.parts))
    }

    fn is_placeholder(src: &[u8]) -> bool {
        !src.is_empty() && src.as_ptr() == PLACEHOLDER.as_ptr()
    }
}

unsafe impl BufMut for SplicingBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded under the caller's guarantee that `cnt` bytes of
        // `chunk_mut` were initialised.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if Self::is_placeholder(src) {
            match self.regions.next() {
                Some(plan) if plan.len == src.len() => {
                    if !self.current.is_empty() {
                        let head = self.current.split().freeze();
                        self.before_current += head.len();
                        self.parts.push(FramePart::Bytes(head));
                    }
                    self.before_current += plan.len;
                    self.parts.push(FramePart::File(plan));
                }
                _ => self.mismatch = true,
            }
            return;
        }
        self.current.extend_from_slice(src);
    }
}

impl ByteBufMut for SplicingBuf {
    fn offset(&self) -> usize {
        self.before_current + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        // Only gaps (record-batch encoding) seek, never response encoding;
        // support seeking forward within the current chunk all the same.
        self.current.resize(offset.saturating_sub(self.before_current), 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let base = self.before_current;
        &mut self.current[r.start - base..r.end - base]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;

    fn response(records: Vec<Option<Bytes>>) -> FetchResponse {
        let partitions =
            records.into_iter().enumerate().map(|(i, r)| PartitionData::default().with_partition_index(i as i32).with_records(r)).collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    /// Splicing then filling in the regions yields exactly the flat encoding.
    #[test]
    fn spliced_frame_equals_flat_encoding() {
        let mut file = tempfile::tempfile().expect("temp file");
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).expect("write");
        let file = Arc::new(file);
        let plans = vec![
            ReadPlan { file: Some(file.clone()), position: 10, len: 1000 },
            ReadPlan { file: Some(file.clone()), position: 3000, len: 1 },
        ];
        for version in [4i16, 11, 12, 16] {
            let flat = response(vec![
                Some(Bytes::copy_from_slice(&data[10..1010])),
                Some(Bytes::new()),
                Some(Bytes::copy_from_slice(&data[3000..3001])),
            ]);
            let mut expected = BytesMut::new();
            flat.encode(&mut expected, version).expect("encode");

            let placeholders = response(vec![placeholder(1000), Some(Bytes::new()), placeholder(1)]);
            let mut buf = SplicingBuf::new(64, plans.clone());
            placeholders.encode(&mut buf, version).expect("encode");
            let ResponseFrame::Spliced(parts) = buf.finish().expect("regions line up") else { panic!("nothing spliced") };
            let mut got = Vec::new();
            for part in parts {
                match part {
                    FramePart::Bytes(b) => got.extend_from_slice(&b),
                    FramePart::File(plan) => {
                        let mut region = vec![0; plan.len];
                        plan.file.as_ref().expect("file").read_exact_at(&mut region, plan.position).expect("read");
                        got.extend_from_slice(&region);
                    }
                }
            }
            assert_eq!(got, expected.to_vec(), "fetch v{version}");
        }
    }

    #[test]
    fn unmatched_placeholder_is_an_error() {
        let mut buf = SplicingBuf::new(64, vec![]);
        response(vec![placeholder(10)]).encode(&mut buf, 12).expect("encode");
        assert!(buf.finish().is_err());
        let file = Arc::new(tempfile::tempfile().expect("temp file"));
        let mut buf = SplicingBuf::new(64, vec![ReadPlan { file: Some(file), position: 0, len: 9 }]);
        response(vec![placeholder(10)]).encode(&mut buf, 12).expect("encode");
        assert!(buf.finish().is_err(), "a length mismatch must not pass");
    }

    #[test]
    fn no_regions_gives_one_buffer() {
        let mut buf = SplicingBuf::new(64, vec![]);
        response(vec![Some(Bytes::from_static(b"abc"))]).encode(&mut buf, 12).expect("encode");
        assert!(matches!(buf.finish(), Ok(ResponseFrame::Bytes(_))));
    }
}
