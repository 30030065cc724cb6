//! Request dispatch (Kafka's `KafkaApis`): one file per API below this module.
//!
//! [`handle_request`] parses the request header, checks the version against
//! [`SUPPORTED_APIS`] (the single source of truth that ApiVersions also
//! advertises), decodes the body with the kafka-protocol crate and calls the
//! API's handler. A handler returns a [`Reply`]: a response now, a future of
//! one (produce waiting for fsync, fetch waiting for data, a join waiting for
//! the rebalance), or no response at all (produce with acks=0).

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use runnel_storage::ReadPlan;

use runnel_controller::acl;

use crate::frame::{ResponseFrame, SplicingBuf};
use crate::quota::QuotaKind;
use crate::security::authorizer::{Authorizer, Requester};
use crate::network::{ConnectionError, ConnectionState, SaslProgress};
use crate::Broker;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_partitions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_records;
pub mod delete_topics;
pub mod elect_leaders;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod end_txn;
pub mod delete_groups;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_config_resources;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

/// Authorized-operations bitfields (KIP-430), answered when a client asks
/// for them without an authorizer configured: like Kafka without one, every
/// operation a resource type supports is allowed (with one, [`Authz::operations`]).
pub mod authorized_operations {
    // Kafka's AclOperation codes.
    const READ: u8 = 3;
    const WRITE: u8 = 4;
    const CREATE: u8 = 5;
    const DELETE: u8 = 6;
    const ALTER: u8 = 7;
    const DESCRIBE: u8 = 8;
    const CLUSTER_ACTION: u8 = 9;
    const DESCRIBE_CONFIGS: u8 = 10;
    const ALTER_CONFIGS: u8 = 11;
    const IDEMPOTENT_WRITE: u8 = 12;

    /// "Not requested": Kafka's sentinel.
    pub const OMITTED: i32 = i32::MIN;

    const fn bits(ops: &[u8]) -> i32 {
        let mut field = 0i32;
        let mut i = 0;
        while i < ops.len() {
            field |= 1 << ops[i];
            i += 1;
        }
        field
    }

    pub const TOPIC: i32 = bits(&[READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);
    pub const CLUSTER: i32 = bits(&[CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE]);
    pub const GROUP: i32 = bits(&[READ, DESCRIBE, DELETE]);

    pub fn if_requested(requested: bool, operations: i32) -> i32 {
        if requested {
            operations
        } else {
            OMITTED
        }
    }
}

/// Every API this broker implements, with the version range it advertises.
/// An API absent here is absent from ApiVersions and its requests close the
/// connection, as Kafka does for APIs it does not expose.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    // Kafka 4 advertises Produce from v0 so that older librdkafka accepts the
    // broker (KAFKA-18659) but rejects v0-2 when they are used.
    (ApiKey::Produce, 0, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    // SASL listeners (issue 13); on others they answer ILLEGAL_SASL_STATE, as Kafka's.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    // SCRAM credentials in the cluster metadata (KIP-554).
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    // Client quotas in the cluster metadata (KIP-546), enforced by throttling (`quota.rs`).
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::ListConfigResources, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // Transactions v1 (KIP-98) and v2 (KIP-890, finalized `transaction.version`
    // 2 in ApiVersions): EndTxn v5 bumps the epoch, Produce v12 and
    // TxnOffsetCommit v5 add their partition to the transaction themselves.
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
];

/// Versions the broker actually accepts (narrower than advertised for Produce).
fn accepted_range(api_key: ApiKey) -> Option<(i16, i16)> {
    let (_, min, max) = SUPPORTED_APIS.iter().find(|(k, _, _)| *k == api_key)?;
    let crate_range = api_key.valid_versions();
    Some(((*min).max(crate_range.min), (*max).min(crate_range.max)))
}

/// A response being prepared. It resolves to the encoded frame, or to an
/// error when the response cannot be encoded: the connection is then closed,
/// because a response that silently vanished would shift every later answer
/// on the connection onto the wrong request.
pub type PendingResponse = Pin<Box<dyn Future<Output = Result<ResponseFrame, UnencodableResponse>> + Send>>;

/// A handler's response that kafka-protocol refused to encode (typically a
/// field set that does not exist at the request's version): a broker bug.
#[derive(Debug, thiserror::Error)]
#[error("the {api:?} v{version} response to correlation id {correlation_id} cannot be encoded: {reason}")]
pub struct UnencodableResponse {
    pub api: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub reason: String,
}

/// A handler's answer.
pub enum Reply<T> {
    Now(T),
    Later(Pin<Box<dyn Future<Output = T> + Send>>),
    /// No response is sent (acks=0).
    Nothing,
}

/// The parsed header and connection facts a handler may need.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub version: i16,
    pub peer: SocketAddr,
    /// The listener the request came in on: answers naming brokers give their addresses on it.
    pub listener: Arc<str>,
    /// Who sent it (Kafka's principal, `User:ANONYMOUS` unless authenticated).
    pub principal: Arc<str>,
    /// The connection's mute, for a client throttled by a quota.
    pub throttle: crate::quota::SharedGate,
}

impl RequestContext {
    pub fn client_id(&self) -> &str {
        self.header.client_id.as_deref().unwrap_or("")
    }
}

/// One request's authorization checks (Kafka's `AuthHelper`): the requester and,
/// with an authorizer configured, the ACLs of the image as the request found it.
/// Cheap to clone into a handler's future.
#[derive(Clone)]
pub struct Authz {
    authorizer: Arc<Authorizer>,
    image: Option<Arc<runnel_controller::MetadataImage>>,
    principal: Arc<str>,
    host: std::net::IpAddr,
}

impl Authz {
    pub fn new(broker: &Broker, ctx: &RequestContext) -> Self {
        let image = broker.authorizer.enabled().then(|| broker.cluster.image());
        Authz { authorizer: broker.authorizer.clone(), image, principal: ctx.principal.clone(), host: ctx.peer.ip() }
    }

    fn requester(&self) -> Requester<'_> {
        Requester { principal: &self.principal, host: self.host }
    }

    /// Whether an authorizer is configured.
    pub fn enabled(&self) -> bool {
        self.image.is_some()
    }

    pub fn allows(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        match &self.image {
            None => true,
            Some(image) => self.authorizer.authorize(image, self.requester(), operation, resource_type, name),
        }
    }

    pub fn topic(&self, operation: i8, topic: &str) -> bool {
        self.allows(operation, acl::resource_type::TOPIC, topic)
    }

    pub fn group(&self, operation: i8, group: &str) -> bool {
        self.allows(operation, acl::resource_type::GROUP, group)
    }

    pub fn cluster(&self, operation: i8) -> bool {
        self.allows(operation, acl::resource_type::CLUSTER, acl::CLUSTER_NAME)
    }

    pub fn transactional_id(&self, operation: i8, id: &str) -> bool {
        self.allows(operation, acl::resource_type::TRANSACTIONAL_ID, id)
    }

    /// Whether `operation` is allowed on at least one resource of the type.
    pub fn any(&self, operation: i8, resource_type: i8) -> bool {
        match &self.image {
            None => true,
            Some(image) => self.authorizer.authorize_any(image, self.requester(), operation, resource_type),
        }
    }

    /// DescribeConfigs / AlterConfigs / IncrementalAlterConfigs: `operation` on
    /// the config resource (a topic, a group, the cluster for broker configs),
    /// refused with that resource's AUTHORIZATION_FAILED code, as Kafka does.
    pub fn config_resource(&self, operation: i8, resource_type: i8, name: &str) -> Result<(), crate::error::ApiError> {
        use kafka_protocol::error::ResponseError;
        let (allowed, refusal) = match resource_type {
            describe_configs::RESOURCE_TOPIC => (self.topic(operation, name), ResponseError::TopicAuthorizationFailed),
            describe_configs::RESOURCE_GROUP => (self.group(operation, name), ResponseError::GroupAuthorizationFailed),
            _ => (self.cluster(operation), ResponseError::ClusterAuthorizationFailed),
        };
        if allowed {
            Ok(())
        } else {
            Err(crate::error::ApiError::bare(refusal))
        }
    }

    /// KIP-430 bitfield: `unrestricted` without an authorizer, else what the ACLs allow of `supported`.
    pub fn operations(&self, resource_type: i8, name: &str, supported: &[i8], unrestricted: i32) -> i32 {
        match &self.image {
            None => unrestricted,
            Some(image) => self.authorizer.authorized_operations(image, self.requester(), resource_type, name, supported),
        }
    }
}

/// Encodes a response with its header and size prefix.
pub fn encode_response<T: Encodable + HeaderVersion>(ctx: &RequestContext, response: &T) -> Result<ResponseFrame, UnencodableResponse> {
    encode_spliced(ctx, response, Vec::new())
}

/// Encodes a response whose record placeholders stand for `regions` (see [`crate::frame`]).
fn encode_spliced<T: Encodable + HeaderVersion>(
    ctx: &RequestContext,
    response: &T,
    regions: Vec<ReadPlan>,
) -> Result<ResponseFrame, UnencodableResponse> {
    encode_frame(ctx.header.correlation_id, T::header_version(ctx.version), response, ctx.version, regions).map_err(|e| {
        let failure = UnencodableResponse { api: ctx.api_key, version: ctx.version, correlation_id: ctx.header.correlation_id, reason: format!("{e:#}") };
        tracing::error!(error = %failure, client = ctx.client_id(), peer = %ctx.peer, "encoding a response failed; closing the connection");
        failure
    })
}

fn encode_frame<T: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &T,
    version: i16,
    regions: Vec<ReadPlan>,
) -> anyhow::Result<ResponseFrame> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let spliced: usize = regions.iter().map(|r| r.len).sum();
    let mut buf = SplicingBuf::new(4 + size - spliced.min(size), regions);
    buf.put_i32(i32::try_from(size)?);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    buf.finish()
}

/// What a handler's reply becomes on the wire.
pub trait IntoFrame: Send + 'static {
    fn into_frame(self, ctx: &RequestContext) -> Result<ResponseFrame, UnencodableResponse>;
}

impl<T: Encodable + HeaderVersion + Send + 'static> IntoFrame for T {
    fn into_frame(self, ctx: &RequestContext) -> Result<ResponseFrame, UnencodableResponse> {
        encode_response(ctx, &self)
    }
}

impl IntoFrame for fetch::FetchReply {
    fn into_frame(self, ctx: &RequestContext) -> Result<ResponseFrame, UnencodableResponse> {
        encode_spliced(ctx, &self.response, self.regions)
    }
}

/// An answer that carries `throttle_time_ms` (client quotas).
pub trait Throttled: Send + 'static {
    fn throttle_time_ms(&mut self) -> &mut i32;
    /// The bytes a fetch answer carries (None for produce: the request's are counted).
    fn quota_bytes(&self) -> usize {
        0
    }

    /// Replaces a throttled answer by an empty one (fetch, as Kafka's
    /// `getThrottledResponse`; the client reads the records again after the
    /// throttle). False when the answer is kept (produce: the records are appended).
    fn withhold(&mut self, _broker: &Broker, _session_epoch: i32) -> bool {
        false
    }
}

impl Throttled for kafka_protocol::messages::ProduceResponse {
    fn throttle_time_ms(&mut self) -> &mut i32 {
        &mut self.throttle_time_ms
    }
}

impl Throttled for fetch::FetchReply {
    fn throttle_time_ms(&mut self) -> &mut i32 {
        &mut self.response.throttle_time_ms
    }

    fn quota_bytes(&self) -> usize {
        self.response.responses.iter().flat_map(|t| t.partitions.iter()).map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum()
    }

    fn withhold(&mut self, broker: &Broker, session_epoch: i32) -> bool {
        if self.response.error_code != 0 {
            return false;
        }
        let session_id = match session_epoch {
            // A session opened by this fetch is not kept (Kafka creates none for a throttled answer).
            0 => {
                if self.response.session_id != crate::fetch_session::INVALID_SESSION_ID {
                    broker.fetch_sessions.remove(self.response.session_id);
                }
                crate::fetch_session::INVALID_SESSION_ID
            }
            _ => self.response.session_id,
        };
        self.response = kafka_protocol::messages::FetchResponse::default().with_session_id(session_id);
        self.regions.clear();
        true
    }
}

/// Records the client's bytes against its quota (`request_bytes`, else the
/// answer's) and throttles it as Kafka does: `throttle_time_ms` in the answer,
/// and the connection muted for that long (KIP-219: Produce v6+, Fetch v8+) or,
/// for older versions, the answer sent that much later. acks=0 (no answer) mutes.
/// A throttled fetch is answered empty and its bytes are not counted (as Kafka).
fn throttled<T: Throttled>(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    kind: QuotaKind,
    request_bytes: Option<usize>,
    reply: Reply<T>,
    session_epoch: i32,
) -> Reply<T> {
    let image = broker.cluster.image();
    if image.client_quotas.is_empty() {
        return reply;
    }
    let kip219 = match kind {
        QuotaKind::Produce => ctx.version >= 6,
        QuotaKind::Fetch | QuotaKind::Request => ctx.version >= 8,
    };
    let broker = broker.clone();
    let (principal, client_id, gate) = (ctx.principal.clone(), ctx.client_id().to_string(), ctx.throttle.clone());
    let apply = move |answer: Option<&mut T>| {
        let bytes = request_bytes.unwrap_or_else(|| answer.as_ref().map_or(0, |a| a.quota_bytes()));
        let image = broker.cluster.image();
        let now = std::time::Instant::now();
        let throttle = broker.quotas.record(kind, &image.client_quotas, &principal, &client_id, bytes, now);
        if !throttle.is_zero() {
            tracing::debug!(?kind, client = %client_id, %principal, throttle_ms = throttle.as_millis() as u64, "client over its quota: throttled");
            if let Some(answer) = answer {
                if answer.withhold(&broker, session_epoch) {
                    broker.quotas.unrecord(kind, &image.client_quotas, &principal, &client_id, bytes, now);
                }
            }
        }
        throttle
    };
    let finish_answer = move |mut answer: T, throttle: std::time::Duration, gate: &crate::quota::ThrottleGate, muted: bool| {
        let ms = throttle.as_millis().min(i32::MAX as u128) as i32;
        let field = answer.throttle_time_ms();
        *field = (*field).max(ms);
        if kip219 && ms > 0 && !muted {
            gate.mute_for(throttle);
        }
        answer
    };
    // A produce's bytes are known now: recorded and the connection muted before
    // the next request is read, as Kafka (which reads one request at a time) does.
    let early = request_bytes.map(|_| apply(None));
    if let Some(throttle) = early.filter(|t| !t.is_zero()) {
        if kip219 || matches!(reply, Reply::Nothing) {
            gate.mute_for(throttle);
        }
    }
    let muted = early.is_some();
    match reply {
        Reply::Nothing => Reply::Nothing,
        Reply::Now(mut answer) if kip219 => {
            let throttle = early.unwrap_or_else(|| apply(Some(&mut answer)));
            Reply::Now(finish_answer(answer, throttle, &gate, muted))
        }
        Reply::Now(mut answer) => Reply::Later(Box::pin(async move {
            let throttle = early.unwrap_or_else(|| apply(Some(&mut answer)));
            tokio::time::sleep(throttle).await;
            finish_answer(answer, throttle, &gate, muted)
        })),
        Reply::Later(fut) => Reply::Later(Box::pin(async move {
            let mut answer = fut.await;
            let throttle = early.unwrap_or_else(|| apply(Some(&mut answer)));
            if !kip219 {
                tokio::time::sleep(throttle).await;
            }
            finish_answer(answer, throttle, &gate, muted)
        })),
    }
}

/// A future and the time spent polling it: the handler time Kafka's request
/// quota counts (a request's work, not its waits for replicas, fsync or data).
struct PollTimed<F> {
    inner: F,
    busy: std::time::Duration,
}

impl<F: Future + Unpin> Future for PollTimed<F> {
    type Output = (F::Output, std::time::Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let started = std::time::Instant::now();
        let polled = Pin::new(&mut self.inner).poll(cx);
        self.busy += started.elapsed();
        polled.map(|output| (output, self.busy))
    }
}

/// An answer whose `throttle_time_ms` a quota raises.
pub trait ThrottleTime {
    /// Raises the answer's `throttle_time_ms` to `ms` (nothing for an answer without the field).
    fn raise_throttle_time_ms(&mut self, ms: i32);
}

macro_rules! throttle_time_field {
    ($($t:ty),* $(,)?) => {$(
        impl ThrottleTime for $t {
            fn raise_throttle_time_ms(&mut self, ms: i32) {
                self.throttle_time_ms = self.throttle_time_ms.max(ms);
            }
        }
    )*};
}

macro_rules! no_throttle_time_field {
    ($($t:ty),* $(,)?) => {$(
        impl ThrottleTime for $t {
            fn raise_throttle_time_ms(&mut self, _ms: i32) {}
        }
    )*};
}

mod throttle_fields {
    use super::ThrottleTime;
    use kafka_protocol::messages::*;
    throttle_time_field!(
        AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, AlterClientQuotasResponse, AlterConfigsResponse,
        AlterPartitionReassignmentsResponse, AlterUserScramCredentialsResponse, ApiVersionsResponse,
        ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatResponse, CreateAclsResponse, CreatePartitionsResponse,
        CreateTopicsResponse, DeleteAclsResponse, DeleteGroupsResponse, DeleteRecordsResponse, DeleteTopicsResponse,
        DescribeAclsResponse, DescribeClientQuotasResponse, DescribeClusterResponse, DescribeConfigsResponse,
        DescribeGroupsResponse, DescribeLogDirsResponse, DescribeProducersResponse, DescribeTopicPartitionsResponse,
        DescribeTransactionsResponse, DescribeUserScramCredentialsResponse, ElectLeadersResponse, EndTxnResponse,
        FindCoordinatorResponse, HeartbeatResponse, IncrementalAlterConfigsResponse, InitProducerIdResponse,
        JoinGroupResponse, LeaveGroupResponse, ListConfigResourcesResponse, ListGroupsResponse, ListOffsetsResponse,
        ListPartitionReassignmentsResponse, ListTransactionsResponse, MetadataResponse, OffsetCommitResponse,
        OffsetDeleteResponse, OffsetFetchResponse, OffsetForLeaderEpochResponse, ProduceResponse, SyncGroupResponse,
        TxnOffsetCommitResponse,
    );
    no_throttle_time_field!(DescribeQuorumResponse, WriteTxnMarkersResponse, SaslHandshakeResponse, SaslAuthenticateResponse);
}

impl ThrottleTime for fetch::FetchReply {
    fn raise_throttle_time_ms(&mut self, ms: i32) {
        self.response.throttle_time_ms = self.response.throttle_time_ms.max(ms);
    }
}

/// Finishes a reply after recording the request's handler time (`busy`, plus
/// the time its later answer is polled) against the client's
/// `request_percentage` quota (KIP-124), as Kafka's `ClientRequestQuotaManager`:
/// a client over it gets `throttle_time_ms` in the answer and its connection
/// muted for that long. `exempt` requests (ApiVersions, SASL, follower fetches,
/// WriteTxnMarkers) are not throttled.
fn finish_with_request_quota<T: IntoFrame + ThrottleTime>(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    reply: Reply<T>,
    busy: std::time::Duration,
    exempt: bool,
) -> Option<PendingResponse> {
    if exempt || !broker.cluster.image().client_quotas.values().any(|q| q.contains_key(QuotaKind::Request.key())) {
        return finish(ctx, reply);
    }
    let record = {
        let broker = broker.clone();
        let (principal, client_id) = (ctx.principal.clone(), ctx.client_id().to_string());
        move |busy: std::time::Duration| {
            let image = broker.cluster.image();
            let share = crate::quota::time_as_percentage(busy);
            let throttle = broker.quotas.record_value(QuotaKind::Request, &image.client_quotas, &principal, &client_id, share, std::time::Instant::now());
            if !throttle.is_zero() {
                tracing::debug!(client = %client_id, %principal, throttle_ms = throttle.as_millis() as u64, "client over its request_percentage quota: throttled");
            }
            throttle
        }
    };
    let apply = |answer: &mut T, throttle: std::time::Duration, gate: &crate::quota::ThrottleGate| {
        if !throttle.is_zero() {
            answer.raise_throttle_time_ms(throttle.as_millis().min(i32::MAX as u128) as i32);
            gate.mute_for(throttle);
        }
    };
    match reply {
        Reply::Now(mut answer) => {
            let throttle = record(busy);
            apply(&mut answer, throttle, &ctx.throttle);
            finish(ctx, Reply::Now(answer))
        }
        Reply::Later(later) => {
            let gate = ctx.throttle.clone();
            let later = Box::pin(async move {
                let (mut answer, more) = PollTimed { inner: later, busy: std::time::Duration::ZERO }.await;
                let throttle = record(busy + more);
                apply(&mut answer, throttle, &gate);
                answer
            });
            finish(ctx, Reply::Later(later))
        }
        Reply::Nothing => {
            let throttle = record(busy);
            if !throttle.is_zero() {
                ctx.throttle.mute_for(throttle);
            }
            None
        }
    }
}

/// A CreateTopics, CreatePartitions or DeleteTopics request's controller
/// mutation quota (KIP-599): topics are admitted while the client's budget
/// lasts (strict versions) and the partitions they create or delete recorded;
/// the answer's throttle is how long until the budget is back.
pub struct ControllerMutations {
    broker: Arc<Broker>,
    quota: Option<crate::quota::MutationQuota>,
}

impl ControllerMutations {
    /// `strict_from`: the first version whose clients are told THROTTLING_QUOTA_EXCEEDED per topic.
    pub fn new(broker: &Arc<Broker>, ctx: &RequestContext, strict_from: i16) -> ControllerMutations {
        let image = broker.cluster.image();
        let quota = broker.quotas.mutation_quota(&image.client_quotas, &ctx.principal, ctx.client_id(), ctx.version >= strict_from);
        ControllerMutations { broker: broker.clone(), quota }
    }

    /// Before a topic's change: refused when a strict client's budget is spent.
    pub fn admit(&self) -> Result<(), crate::error::ApiError> {
        match &self.quota {
            Some(quota) => self.broker.quotas.record_mutations(quota, 0, std::time::Instant::now()).map_err(|_| {
                crate::error::ApiError::new(kafka_protocol::error::ResponseError::ThrottlingQuotaExceeded, "The throttling quota has been exceeded.")
            }),
            None => Ok(()),
        }
    }

    /// After a topic's change: the partitions it created or deleted.
    pub fn record(&self, partitions: usize) {
        if let Some(quota) = &self.quota {
            let _ = self.broker.quotas.record_mutations(&ControllerMutations::permissive(quota), partitions, std::time::Instant::now());
        }
    }

    fn permissive(quota: &crate::quota::MutationQuota) -> crate::quota::MutationQuota {
        let mut quota = quota.clone();
        quota.strict = false;
        quota
    }

    /// The answer's `throttle_time_ms`; the connection is muted that long.
    pub fn throttle_time_ms(&self, ctx: &RequestContext) -> i32 {
        let Some(quota) = &self.quota else { return 0 };
        let throttle = self.broker.quotas.mutation_throttle(quota, std::time::Instant::now());
        if !throttle.is_zero() {
            ctx.throttle.mute_for(throttle);
        }
        throttle.as_millis().min(i32::MAX as u128) as i32
    }
}

/// Decodes a request body; a malformed body or a decoder panic is a bad request.
fn decode_body<T: Decodable>(body: &mut Bytes, api_key: ApiKey, version: i16) -> Result<T, ConnectionError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| T::decode(body, version))) {
        Ok(Ok(req)) => Ok(req),
        Ok(Err(e)) => Err(ConnectionError::BadRequest(format!("malformed {api_key:?} v{version} request: {e}"))),
        Err(_) => Err(ConnectionError::BadRequest(format!("malformed {api_key:?} v{version} request (decoder panicked)"))),
    }
}

fn finish<T: IntoFrame>(ctx: RequestContext, reply: Reply<T>) -> Option<PendingResponse> {
    match reply {
        Reply::Now(resp) => {
            let frame = resp.into_frame(&ctx);
            Some(Box::pin(std::future::ready(frame)))
        }
        Reply::Later(fut) => Some(Box::pin(async move { fut.await.into_frame(&ctx) })),
        Reply::Nothing => None,
    }
}

/// A request frame's fixed prefix and header, checked against [`SUPPORTED_APIS`].
pub enum ParsedFrame {
    /// ApiVersions at a version this broker does not know: answered in the v0 format (KIP-511).
    UnsupportedApiVersions { correlation_id: i32 },
    /// A supported API and version; `body` is what follows the header.
    Request { header: RequestHeader, api_key: ApiKey, version: i16, body: Bytes },
}

/// Parses a request frame's API key, version and header (the first step of
/// [`handle_request`]). An error closes the connection.
pub fn parse_frame(frame: Bytes) -> Result<ParsedFrame, ConnectionError> {
    if frame.len() < 8 {
        return Err(ConnectionError::BadRequest(format!("{}-byte frame is shorter than a request header", frame.len())));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Err(ConnectionError::BadRequest(format!("unknown API key {raw_key}")));
    };
    let accepted = accepted_range(api_key);
    let in_range = matches!(accepted, Some((min, max)) if (min..=max).contains(&version));
    if !in_range {
        if api_key == ApiKey::ApiVersions {
            return Ok(ParsedFrame::UnsupportedApiVersions { correlation_id });
        }
        return Err(ConnectionError::BadRequest(format!("{api_key:?} v{version} is not supported")));
    }
    let mut body = frame;
    let header_version = api_key.request_header_version(version);
    let header: RequestHeader = match std::panic::catch_unwind(AssertUnwindSafe(|| RequestHeader::decode(&mut body, header_version))) {
        Ok(Ok(h)) => h,
        _ => return Err(ConnectionError::BadRequest(format!("malformed {api_key:?} request header"))),
    };
    Ok(ParsedFrame::Request { header, api_key, version, body })
}

/// Parses a frame and decodes its body as [`handle_request`] does, without
/// handling it: what the `request` fuzz target (`fuzz/`) drives. Ok(None) for
/// the unsupported-ApiVersions case, Ok(Some(api key)) for a decoded request.
pub fn decode_frame(frame: Bytes) -> Result<Option<ApiKey>, ConnectionError> {
    let (api_key, version, mut body) = match parse_frame(frame)? {
        ParsedFrame::UnsupportedApiVersions { .. } => return Ok(None),
        ParsedFrame::Request { api_key, version, body, .. } => (api_key, version, body),
    };
    use kafka_protocol::messages as m;
    macro_rules! decode {
        ($($key:ident => $req:ty,)*) => {
            match api_key {
                $(ApiKey::$key => decode_body::<$req>(&mut body, api_key, version).map(|_| Some(api_key)),)*
                other => Err(ConnectionError::BadRequest(format!("{other:?} is advertised but has no decoder"))),
            }
        };
    }
    decode! {
        SaslHandshake => m::SaslHandshakeRequest,
        SaslAuthenticate => m::SaslAuthenticateRequest,
        ApiVersions => m::ApiVersionsRequest,
        Metadata => m::MetadataRequest,
        Produce => m::ProduceRequest,
        Fetch => m::FetchRequest,
        ListOffsets => m::ListOffsetsRequest,
        InitProducerId => m::InitProducerIdRequest,
        FindCoordinator => m::FindCoordinatorRequest,
        JoinGroup => m::JoinGroupRequest,
        SyncGroup => m::SyncGroupRequest,
        Heartbeat => m::HeartbeatRequest,
        LeaveGroup => m::LeaveGroupRequest,
        OffsetCommit => m::OffsetCommitRequest,
        OffsetFetch => m::OffsetFetchRequest,
        ListGroups => m::ListGroupsRequest,
        DescribeGroups => m::DescribeGroupsRequest,
        DeleteGroups => m::DeleteGroupsRequest,
        OffsetDelete => m::OffsetDeleteRequest,
        ConsumerGroupHeartbeat => m::ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => m::ConsumerGroupDescribeRequest,
        CreateTopics => m::CreateTopicsRequest,
        DeleteTopics => m::DeleteTopicsRequest,
        CreatePartitions => m::CreatePartitionsRequest,
        DeleteRecords => m::DeleteRecordsRequest,
        DescribeConfigs => m::DescribeConfigsRequest,
        AlterConfigs => m::AlterConfigsRequest,
        IncrementalAlterConfigs => m::IncrementalAlterConfigsRequest,
        DescribeAcls => m::DescribeAclsRequest,
        CreateAcls => m::CreateAclsRequest,
        DeleteAcls => m::DeleteAclsRequest,
        DescribeCluster => m::DescribeClusterRequest,
        DescribeTopicPartitions => m::DescribeTopicPartitionsRequest,
        OffsetForLeaderEpoch => m::OffsetForLeaderEpochRequest,
        ListConfigResources => m::ListConfigResourcesRequest,
        DescribeProducers => m::DescribeProducersRequest,
        DescribeLogDirs => m::DescribeLogDirsRequest,
        DescribeQuorum => m::DescribeQuorumRequest,
        ElectLeaders => m::ElectLeadersRequest,
        AlterPartitionReassignments => m::AlterPartitionReassignmentsRequest,
        ListPartitionReassignments => m::ListPartitionReassignmentsRequest,
        AddPartitionsToTxn => m::AddPartitionsToTxnRequest,
        AddOffsetsToTxn => m::AddOffsetsToTxnRequest,
        EndTxn => m::EndTxnRequest,
        WriteTxnMarkers => m::WriteTxnMarkersRequest,
        TxnOffsetCommit => m::TxnOffsetCommitRequest,
        DescribeTransactions => m::DescribeTransactionsRequest,
        ListTransactions => m::ListTransactionsRequest,
        DescribeUserScramCredentials => m::DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials => m::AlterUserScramCredentialsRequest,
        DescribeClientQuotas => m::DescribeClientQuotasRequest,
        AlterClientQuotas => m::AlterClientQuotasRequest,
    }
}

/// Handles one request frame. Returns the pending response to queue on the
/// connection (None when no response is due), or an error that closes the
/// connection.
pub async fn handle_request(
    broker: &Arc<Broker>,
    frame: Bytes,
    connection: &mut ConnectionState,
) -> Result<Option<PendingResponse>, ConnectionError> {
    let peer = connection.peer;
    let (header, api_key, version, mut body) = match parse_frame(frame)? {
        ParsedFrame::UnsupportedApiVersions { correlation_id } => {
            // KIP-511: answer in the v0 format so the client can retry with a version we know.
            let resp = api_versions::unsupported_version_response();
            let frame = encode_frame(correlation_id, 0, &resp, 0, Vec::new())
                .map_err(|e| ConnectionError::BadRequest(format!("the ApiVersions v0 error answer cannot be encoded: {e:#}")))?;
            return Ok(Some(Box::pin(std::future::ready(Ok(frame)))));
        }
        ParsedFrame::Request { header, api_key, version, body } => (header, api_key, version, body),
    };
    let correlation_id = header.correlation_id;
    let ctx = RequestContext {
        header,
        api_key,
        version,
        peer,
        listener: connection.listener.name.clone(),
        principal: connection.principal.clone(),
        throttle: connection.throttle.clone(),
    };
    tracing::trace!(api = ?api_key, version, correlation_id, client = ctx.client_id(), "request");
    if connection.sasl == SaslProgress::Authenticated {
        let now = std::time::Instant::now();
        if api_key == ApiKey::SaslHandshake && connection.session.may_begin_reauthentication(now) {
            // KIP-368: the client re-authenticates on this connection; it keeps
            // its principal (and its requests in flight) meanwhile.
            connection.session.last_reauthentication = Some(now);
            connection.session.reauthenticating_as = Some(connection.principal.clone());
            connection.sasl = SaslProgress::AwaitingHandshake;
        } else if connection.session.expired(now) {
            return Err(ConnectionError::BadRequest(format!(
                "{api_key:?} after the SASL session of {} ended (connections.max.reauth.ms) without re-authentication; closing the connection, as Kafka does",
                connection.principal
            )));
        }
    }
    if !connection.sasl.allows_requests() && !matches!(api_key, ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
        // Kafka closes a connection that sends anything else before authenticating (ILLEGAL_SASL_STATE).
        return Err(ConnectionError::BadRequest(format!(
            "{api_key:?} before SASL authentication completed on listener {} (ILLEGAL_SASL_STATE)",
            connection.listener.name
        )));
    }

    macro_rules! dispatch {
        ($req:ty, $handler:path) => {{
            let started = std::time::Instant::now();
            let req: $req = decode_body(&mut body, api_key, version)?;
            let decoding = started.elapsed();
            let (reply, busy) = PollTimed { inner: std::pin::pin!($handler(broker, &ctx, req)), busy: decoding }.await;
            let exempt = matches!(api_key, ApiKey::ApiVersions | ApiKey::WriteTxnMarkers);
            Ok(finish_with_request_quota(broker, ctx, reply, busy, exempt))
        }};
    }
    use kafka_protocol::messages as m;
    match api_key {
        ApiKey::SaslHandshake => {
            let req: m::SaslHandshakeRequest = decode_body(&mut body, api_key, version)?;
            let reply = sasl_handshake::handle(&ctx, req, connection);
            Ok(finish(ctx, reply))
        }
        ApiKey::SaslAuthenticate => {
            let req: m::SaslAuthenticateRequest = decode_body(&mut body, api_key, version)?;
            let reply = sasl_authenticate::handle(broker, &ctx, req, connection);
            Ok(finish(ctx, reply))
        }
        ApiKey::ApiVersions => dispatch!(m::ApiVersionsRequest, api_versions::handle),
        ApiKey::Metadata => dispatch!(m::MetadataRequest, metadata::handle),
        ApiKey::Produce => {
            let started = std::time::Instant::now();
            let req: m::ProduceRequest = decode_body(&mut body, api_key, version)?;
            let bytes = req.topic_data.iter().flat_map(|t| t.partition_data.iter()).map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
            let decoding = started.elapsed();
            let acks = req.acks;
            let (reply, busy) = PollTimed { inner: std::pin::pin!(produce::handle(broker, &ctx, req)), busy: decoding }.await;
            if let (0, Reply::Now(refused)) = (acks, &reply) {
                let first = refused.responses.iter().flat_map(|t| t.partition_responses.iter().map(move |p| (t, p))).find(|(_, p)| p.error_code != 0);
                let (topic, error) = first.map_or((String::new(), 0), |(t, p)| (t.name.0.to_string(), p.error_code));
                return Err(ConnectionError::BadRequest(format!(
                    "acks=0 produce to {topic} refused ({:?}); closing the connection, as Kafka does, since no answer can tell the client",
                    kafka_protocol::error::ResponseError::try_from_code(error)
                )));
            }
            let reply = throttled(broker, &ctx, QuotaKind::Produce, Some(bytes), reply, -1);
            Ok(finish_with_request_quota(broker, ctx, reply, busy, false))
        }
        ApiKey::Fetch => {
            let started = std::time::Instant::now();
            let req: m::FetchRequest = decode_body(&mut body, api_key, version)?;
            let from_consumer = req.replica_id.0 < 0 && req.replica_state.replica_id.0 < 0;
            let session_epoch = if version >= 7 { req.session_epoch } else { -1 };
            let decoding = started.elapsed();
            let (reply, busy) = PollTimed { inner: std::pin::pin!(fetch::handle(broker, &ctx, req)), busy: decoding }.await;
            let reply = if from_consumer { throttled(broker, &ctx, QuotaKind::Fetch, None, reply, session_epoch) } else { reply };
            Ok(finish_with_request_quota(broker, ctx, reply, busy, !from_consumer))
        }
        ApiKey::ListOffsets => dispatch!(m::ListOffsetsRequest, list_offsets::handle),
        ApiKey::InitProducerId => dispatch!(m::InitProducerIdRequest, init_producer_id::handle),
        ApiKey::FindCoordinator => dispatch!(m::FindCoordinatorRequest, find_coordinator::handle),
        ApiKey::JoinGroup => dispatch!(m::JoinGroupRequest, join_group::handle),
        ApiKey::SyncGroup => dispatch!(m::SyncGroupRequest, sync_group::handle),
        ApiKey::Heartbeat => dispatch!(m::HeartbeatRequest, heartbeat::handle),
        ApiKey::LeaveGroup => dispatch!(m::LeaveGroupRequest, leave_group::handle),
        ApiKey::OffsetCommit => dispatch!(m::OffsetCommitRequest, offset_commit::handle),
        ApiKey::OffsetFetch => dispatch!(m::OffsetFetchRequest, offset_fetch::handle),
        ApiKey::ListGroups => dispatch!(m::ListGroupsRequest, list_groups::handle),
        ApiKey::DescribeGroups => dispatch!(m::DescribeGroupsRequest, describe_groups::handle),
        ApiKey::DeleteGroups => dispatch!(m::DeleteGroupsRequest, delete_groups::handle),
        ApiKey::OffsetDelete => dispatch!(m::OffsetDeleteRequest, offset_delete::handle),
        ApiKey::ConsumerGroupHeartbeat => dispatch!(m::ConsumerGroupHeartbeatRequest, consumer_group_heartbeat::handle),
        ApiKey::ConsumerGroupDescribe => dispatch!(m::ConsumerGroupDescribeRequest, consumer_group_describe::handle),
        ApiKey::CreateTopics => dispatch!(m::CreateTopicsRequest, create_topics::handle),
        ApiKey::DeleteTopics => dispatch!(m::DeleteTopicsRequest, delete_topics::handle),
        ApiKey::CreatePartitions => dispatch!(m::CreatePartitionsRequest, create_partitions::handle),
        ApiKey::DeleteRecords => dispatch!(m::DeleteRecordsRequest, delete_records::handle),
        ApiKey::DescribeConfigs => dispatch!(m::DescribeConfigsRequest, describe_configs::handle),
        ApiKey::AlterConfigs => dispatch!(m::AlterConfigsRequest, alter_configs::handle),
        ApiKey::IncrementalAlterConfigs => dispatch!(m::IncrementalAlterConfigsRequest, incremental_alter_configs::handle),
        ApiKey::DescribeAcls => dispatch!(m::DescribeAclsRequest, describe_acls::handle),
        ApiKey::CreateAcls => dispatch!(m::CreateAclsRequest, create_acls::handle),
        ApiKey::DeleteAcls => dispatch!(m::DeleteAclsRequest, delete_acls::handle),
        ApiKey::DescribeClientQuotas => dispatch!(m::DescribeClientQuotasRequest, describe_client_quotas::handle),
        ApiKey::AlterClientQuotas => dispatch!(m::AlterClientQuotasRequest, alter_client_quotas::handle),
        ApiKey::DescribeCluster => dispatch!(m::DescribeClusterRequest, describe_cluster::handle),
        ApiKey::DescribeTopicPartitions => dispatch!(m::DescribeTopicPartitionsRequest, describe_topic_partitions::handle),
        ApiKey::OffsetForLeaderEpoch => dispatch!(m::OffsetForLeaderEpochRequest, offset_for_leader_epoch::handle),
        ApiKey::ListConfigResources => dispatch!(m::ListConfigResourcesRequest, list_config_resources::handle),
        ApiKey::DescribeProducers => dispatch!(m::DescribeProducersRequest, describe_producers::handle),
        ApiKey::DescribeLogDirs => dispatch!(m::DescribeLogDirsRequest, describe_log_dirs::handle),
        ApiKey::DescribeQuorum => dispatch!(m::DescribeQuorumRequest, describe_quorum::handle),
        ApiKey::ElectLeaders => dispatch!(m::ElectLeadersRequest, elect_leaders::handle),
        ApiKey::AlterPartitionReassignments => {
            dispatch!(m::AlterPartitionReassignmentsRequest, alter_partition_reassignments::handle)
        }
        ApiKey::ListPartitionReassignments => {
            dispatch!(m::ListPartitionReassignmentsRequest, list_partition_reassignments::handle)
        }
        ApiKey::AddPartitionsToTxn => dispatch!(m::AddPartitionsToTxnRequest, add_partitions_to_txn::handle),
        ApiKey::AddOffsetsToTxn => dispatch!(m::AddOffsetsToTxnRequest, add_offsets_to_txn::handle),
        ApiKey::EndTxn => dispatch!(m::EndTxnRequest, end_txn::handle),
        ApiKey::WriteTxnMarkers => dispatch!(m::WriteTxnMarkersRequest, write_txn_markers::handle),
        ApiKey::TxnOffsetCommit => dispatch!(m::TxnOffsetCommitRequest, txn_offset_commit::handle),
        ApiKey::DescribeTransactions => dispatch!(m::DescribeTransactionsRequest, describe_transactions::handle),
        ApiKey::ListTransactions => dispatch!(m::ListTransactionsRequest, list_transactions::handle),
        ApiKey::DescribeUserScramCredentials => {
            dispatch!(m::DescribeUserScramCredentialsRequest, describe_user_scram_credentials::handle)
        }
        ApiKey::AlterUserScramCredentials => dispatch!(m::AlterUserScramCredentialsRequest, alter_user_scram_credentials::handle),
        other => Err(ConnectionError::BadRequest(format!("{other:?} is advertised but has no handler"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    /// A frame of `api_key` at `version` holding just its request header, then `body`.
    fn frame(api_key: ApiKey, version: i16, body: &[u8]) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str("fuzz")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, api_key.request_header_version(version)).expect("header encodes");
        buf.extend_from_slice(body);
        buf.freeze()
    }

    /// `decode_frame` (the `request` fuzz target) decodes every API and version dispatch accepts.
    #[test]
    fn every_supported_version_has_a_decoder() {
        for &(api_key, _, _) in SUPPORTED_APIS {
            let (min, max) = accepted_range(api_key).expect("supported");
            for version in min..=max {
                match decode_frame(frame(api_key, version, &[])) {
                    Ok(_) => {}
                    Err(ConnectionError::BadRequest(e)) => assert!(!e.contains("no decoder"), "{e}"),
                    Err(e) => panic!("{api_key:?} v{version}: {e}"),
                }
            }
        }
        assert!(matches!(decode_frame(frame(ApiKey::ApiVersions, 99, &[])), Ok(None)));
        assert!(decode_frame(Bytes::from_static(&[0, 0, 0])).is_err());
    }
}
