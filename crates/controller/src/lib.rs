//! Runnel's cluster metadata quorum (Kafka KRaft's shape, on openraft).
//!
//! - `records`: the metadata records (the log's entries);
//! - `image`: `MetadataImage`, what the committed records build;
//! - `controller`: the active controller's decisions (pure: request + image → records);
//! - `raft`: the metadata log, state machine and transport on openraft.
//!
//! `Quorum` ties them together: it runs one Raft node; on the leader (the active
//! controller) `submit` decides and commits, on other nodes it forwards to the leader.
//! Brokers follow `image_watch()`, which only ever shows committed state.

pub mod acl;
pub mod controller;
pub mod image;
pub mod quota;
pub mod raft;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use controller::{ControllerConfig, ControllerError, ControllerRequest, ControllerResponse};
pub use image::MetadataImage;
use controller::Controller;
use raft::network::{NetworkFactory, PeerConnection, PeerRequest, PeerResponse, SubmitHandler};
use raft::{NodeId, Raft};
use records::{MetadataBatch, MetadataRecord};

#[derive(Clone)]
pub struct QuorumConfig {
    /// `node.id`
    pub node_id: NodeId,
    /// `controller.quorum.voters`: node id → host:port of its controller listener.
    /// A quorum of one needs no address (and opens no listener).
    pub voters: BTreeMap<NodeId, String>,
    /// The data directory (`log.dirs`); the metadata log lives in `__cluster_metadata-0/` in it.
    pub data_dir: PathBuf,
    pub controller: ControllerConfig,
    /// Raft heartbeat interval (the leader's append-entries when idle).
    pub raft_heartbeat_interval: Duration,
    /// A follower that hears nothing from a leader for a random time in this range starts an election.
    pub election_timeout: (Duration, Duration),
    /// A snapshot is taken every this many applied entries; older entries are then purged.
    pub snapshot_every_entries: u64,
    /// Timeout of one request to a peer.
    pub rpc_timeout: Duration,
    /// The cluster id the first active controller writes into a new metadata log
    /// (a single node passes the id its data directory already has).
    pub bootstrap_cluster_id: Option<String>,
    /// How controller connections are secured (plain TCP unless the broker gives TLS).
    pub transport: Arc<dyn raft::network::PeerTransport>,
}

impl QuorumConfig {
    pub fn new(node_id: NodeId, voters: BTreeMap<NodeId, String>, data_dir: PathBuf) -> Self {
        QuorumConfig {
            node_id,
            voters,
            data_dir,
            controller: ControllerConfig::default(),
            raft_heartbeat_interval: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(800), Duration::from_millis(1600)),
            snapshot_every_entries: 1000,
            rpc_timeout: Duration::from_millis(2000),
            bootstrap_cluster_id: None,
            transport: Arc::new(raft::network::PlainTransport),
        }
    }

    /// A quorum of one: `runnel serve` with no cluster configuration.
    pub fn single_node(node_id: NodeId, data_dir: PathBuf) -> Self {
        let mut config = QuorumConfig::new(node_id, BTreeMap::from([(node_id, String::new())]), data_dir);
        // Alone, it elects itself at once: nobody else's vote to wait for.
        config.election_timeout = (Duration::from_millis(150), Duration::from_millis(300));
        config
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("refused by the controller: {0}")]
    Refused(ControllerError),
    #[error("not the active controller (leader: {leader_id:?})")]
    NotLeader { leader_id: Option<NodeId> },
    #[error("no active controller: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("metadata log in {dir}: {source}")]
    Storage { dir: PathBuf, source: std::io::Error },
    #[error("node {node_id} is not among the voters {voters:?}")]
    NotAVoter { node_id: NodeId, voters: Vec<NodeId> },
    #[error("cannot listen on the controller address {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("raft: {0}")]
    Raft(String),
}

/// What DescribeQuorum (KIP-595) reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuorumInfo {
    pub leader_id: Option<NodeId>,
    /// The Raft term (Kafka's leader epoch of the quorum).
    pub leader_epoch: u64,
    /// The first uncommitted offset (last applied index + 1), as Kafka counts offsets.
    pub high_watermark: i64,
    pub voters: Vec<VoterInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoterInfo {
    pub node_id: NodeId,
    /// -1 when unknown (only the leader knows its followers').
    pub log_end_offset: i64,
    /// Unix ms; -1 when unknown. The leader's view: the last time the voter's
    /// replicated position was seen to move or to equal the leader's log end.
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

struct ActiveController {
    controller: Controller,
    /// The Raft term in which this node last became the active controller.
    active_term: Option<u64>,
    /// When the preferred-leader rebalance last ran (`leader.imbalance.check.interval.seconds`).
    last_rebalance: Instant,
}

#[derive(Default)]
struct VoterProgress {
    matched: Option<u64>,
    last_fetch_ms: i64,
    last_caught_up_ms: i64,
}

struct Shared {
    node_id: NodeId,
    raft: Raft,
    voters: BTreeMap<NodeId, String>,
    image_rx: watch::Receiver<Arc<MetadataImage>>,
    /// The decisions are made one at a time, each against the image that includes all earlier ones.
    controller: tokio::sync::Mutex<ActiveController>,
    rpc_timeout: Duration,
    progress: Mutex<HashMap<NodeId, VoterProgress>>,
    bootstrap_cluster_id: Option<String>,
    transport: Arc<dyn raft::network::PeerTransport>,
}

pub struct Quorum {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    listen_addr: Option<SocketAddr>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn not_leader_or_unavailable<E: std::fmt::Display>(error: RaftError<NodeId, E>, forward: Option<Option<NodeId>>) -> SubmitError {
    match forward {
        Some(leader_id) => SubmitError::NotLeader { leader_id },
        None => SubmitError::Unavailable(error.to_string()),
    }
}

impl Quorum {
    /// Starts this node; binds its controller listener from `voters` when there is more than one voter.
    pub async fn start(config: QuorumConfig) -> Result<Quorum, QuorumError> {
        let listener = if config.voters.len() > 1 {
            let addr = config.voters.get(&config.node_id).cloned().unwrap_or_default();
            Some(TcpListener::bind(&addr).await.map_err(|source| QuorumError::Listen { addr, source })?)
        } else {
            None
        };
        Self::start_with_listener(config, listener).await
    }

    /// As `start`, with the controller listener already bound (tests bind port 0 first).
    pub async fn start_with_listener(config: QuorumConfig, listener: Option<TcpListener>) -> Result<Quorum, QuorumError> {
        if !config.voters.contains_key(&config.node_id) {
            return Err(QuorumError::NotAVoter { node_id: config.node_id, voters: config.voters.keys().copied().collect() });
        }
        let dir = config.data_dir.join(raft::METADATA_DIR);
        let storage_error = |source| QuorumError::Storage { dir: dir.clone(), source };
        let log_store = raft::log_store::LogStore::open(&dir).map_err(storage_error)?;
        let (state_machine, image_rx) = raft::state_machine::StateMachineStore::open(&dir).map_err(storage_error)?;
        let (min, max) = config.election_timeout;
        let raft_config = openraft::Config {
            cluster_name: "runnel-metadata".into(),
            heartbeat_interval: config.raft_heartbeat_interval.as_millis() as u64,
            election_timeout_min: min.as_millis() as u64,
            election_timeout_max: max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
            max_in_snapshot_log_to_keep: config.snapshot_every_entries / 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let raft = Raft::new(config.node_id, Arc::new(raft_config), NetworkFactory { transport: config.transport.clone() }, log_store, state_machine)
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let listen_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            raft: raft.clone(),
            voters: config.voters.clone(),
            image_rx,
            controller: tokio::sync::Mutex::new(ActiveController {
                controller: Controller::new(config.controller.clone()),
                active_term: None,
                last_rebalance: Instant::now(),
            }),
            rpc_timeout: config.rpc_timeout,
            progress: Mutex::new(HashMap::new()),
            bootstrap_cluster_id: config.bootstrap_cluster_id.clone(),
            transport: config.transport.clone(),
        });
        let mut tasks = Vec::new();
        if let Some(listener) = listener {
            let for_handler = Arc::downgrade(&shared);
            let handler: SubmitHandler = Arc::new(move |request| {
                let shared = for_handler.upgrade();
                Box::pin(async move {
                    match shared {
                        Some(shared) => shared.submit_local(request).await,
                        None => Err(SubmitError::Unavailable("shutting down".into())),
                    }
                })
            });
            let for_describe = Arc::downgrade(&shared);
            let describe: raft::network::DescribeQuorumHandler = Arc::new(move || match for_describe.upgrade() {
                Some(shared) => shared.leader_quorum_info(),
                None => Err(SubmitError::Unavailable("shutting down".into())),
            });
            let for_liveness = Arc::downgrade(&shared);
            let liveness_lost: raft::network::LivenessLostHandler = Arc::new(move |node_id, broker_epoch| {
                if let Some(shared) = for_liveness.upgrade() {
                    tokio::spawn(async move { shared.liveness_link_lost(node_id, broker_epoch).await });
                }
            });
            let handlers = raft::network::Handlers { submit: handler, describe, liveness_lost };
            tasks.push(tokio::spawn(raft::network::serve(listener, config.transport.clone(), raft.clone(), handlers)));
        }
        let initialized = raft.is_initialized().await.map_err(|e| QuorumError::Raft(e.to_string()))?;
        if !initialized {
            let members: BTreeMap<NodeId, BasicNode> =
                config.voters.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
            let bootstrap = bootstrap_when_no_peer_has_a_log(raft.clone(), config.node_id, members, config.rpc_timeout, config.transport.clone());
            if config.voters.len() == 1 {
                bootstrap.await;
            } else {
                tasks.push(tokio::spawn(bootstrap));
            }
        }
        tasks.push(tokio::spawn(active_controller_loop(Arc::downgrade(&shared))));
        tracing::info!(node_id = config.node_id, voters = ?config.voters, ?listen_addr, "metadata quorum started");
        Ok(Quorum { shared, tasks: Mutex::new(tasks), listen_addr })
    }

    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// The controller listener's bound address (None for a quorum of one).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// The committed metadata, as it changes.
    pub fn image_watch(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.shared.image_rx.clone()
    }

    /// The active controller, as this node knows it.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.shared.raft.metrics().borrow().current_leader
    }

    /// Runs `request` on the active controller (this node, or forwarded to it) and
    /// answers once its records are committed and applied there. Retries while there
    /// is no leader, for at most a few RPC timeouts.
    pub async fn submit(&self, request: ControllerRequest) -> Result<ControllerResponse, SubmitError> {
        self.shared.submit(request).await
    }

    /// This node's own view of the quorum (only the leader knows its followers' progress).
    pub fn quorum_info(&self) -> QuorumInfo {
        self.shared.quorum_info()
    }

    /// DescribeQuorum as Kafka answers it: the leader's view, asked of the leader
    /// when this node is a follower. Retries while there is no leader, for at most
    /// a few RPC timeouts.
    pub async fn describe_quorum(&self) -> Result<QuorumInfo, SubmitError> {
        let shared = &self.shared;
        shared
            .on_the_leader(|| async { shared.leader_quorum_info() }, |leader| shared.forward_describe_quorum(leader))
            .await
    }

    /// Holds broker `node_id`'s liveness link (incarnation `broker_epoch`) to the
    /// active controller until the leader changes, `until` completes (then the link
    /// is released), or the link breaks (an error; the caller retries). A broker in
    /// the active controller's own process needs no link: it returns when the
    /// leader changes or `until` completes.
    pub async fn hold_liveness_link(
        &self,
        node_id: i32,
        broker_epoch: i64,
        until: impl std::future::Future<Output = ()>,
    ) -> Result<(), SubmitError> {
        let shared = &self.shared;
        let mut metrics = shared.raft.metrics();
        let Some(leader) = metrics.borrow().current_leader else {
            return Err(SubmitError::Unavailable("no leader elected".into()));
        };
        let leader_changed = async move {
            while metrics.changed().await.is_ok() {
                if metrics.borrow().current_leader != Some(leader) {
                    return;
                }
            }
        };
        tokio::pin!(until, leader_changed);
        if leader == shared.node_id {
            tokio::select! {
                _ = &mut until => {}
                _ = &mut leader_changed => {}
            }
            return Ok(());
        }
        let addr = shared.voters.get(&leader).ok_or_else(|| {
            SubmitError::Unavailable(format!("leader {leader} is not a known voter"))
        })?;
        let mut stream = tokio::time::timeout(shared.rpc_timeout, async {
            let mut stream = raft::network::connect(shared.transport.as_ref(), addr).await?;
            raft::network::write_frame(
                &mut stream,
                &PeerRequest::HoldLivenessLink {
                    node_id,
                    broker_epoch,
                },
            )
            .await?;
            match raft::network::read_frame::<PeerResponse, _>(&mut stream).await? {
                PeerResponse::LivenessLinkHeld => Ok(stream),
                _ => Err(std::io::Error::other(
                    "unexpected answer to HoldLivenessLink",
                )),
            }
        })
        .await
        .map_err(|_| SubmitError::Unavailable(format!("no answer from the controller at {addr}")))?
        .map_err(|e| {
            SubmitError::Unavailable(format!("liveness link to the controller at {addr}: {e}"))
        })?;
        let mut byte = [0u8; 1];
        tokio::select! {
            _ = &mut until => {}
            _ = &mut leader_changed => {}
            // The controller never writes on a held link: any read result means it ended.
            _ = tokio::io::AsyncReadExt::read(&mut stream, &mut byte) => {
                return Err(SubmitError::Unavailable(format!("liveness link to the controller at {addr} closed")));
            }
        }
        let _ = raft::network::write_frame(&mut stream, &PeerRequest::ReleaseLivenessLink).await;
        Ok(())
    }

    /// Stops this node: Raft first, then the listener and its connections.
    pub async fn shutdown(self) {
        self.stop().await;
    }

    /// As `shutdown`, for a quorum shared by reference (the broker's).
    pub async fn stop(&self) {
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        for task in tasks {
            task.abort();
        }
        if let Err(e) = self.shared.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum: shutdown");
        }
    }
}

impl Drop for Quorum {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            task.abort();
        }
        // Dropping stops nothing in openraft by itself; the core task ends when every
        // handle is gone and its channels close. Tests kill nodes this way (like a crash).
        let raft = self.shared.raft.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

impl Shared {
    async fn submit(&self, request: ControllerRequest) -> Result<ControllerResponse, SubmitError> {
        self.on_the_leader(|| self.submit_local(request.clone()), |leader| self.forward(leader, request.clone())).await
    }

    /// Runs `here` when this node leads the quorum, else `forward` to the leader;
    /// retries while there is no leader or it moved, for at most a few RPC timeouts.
    async fn on_the_leader<T, Here, HereFut, Forward, ForwardFut>(&self, mut here: Here, mut forward: Forward) -> Result<T, SubmitError>
    where
        Here: FnMut() -> HereFut,
        HereFut: std::future::Future<Output = Result<T, SubmitError>>,
        Forward: FnMut(NodeId) -> ForwardFut,
        ForwardFut: std::future::Future<Output = Result<T, SubmitError>>,
    {
        let deadline = Instant::now() + self.rpc_timeout * 3;
        let mut last_error = SubmitError::Unavailable("no leader elected".into());
        while Instant::now() < deadline {
            let leader = self.raft.metrics().borrow().current_leader;
            let result = match leader {
                Some(leader) if leader == self.node_id => here().await,
                Some(leader) => forward(leader).await,
                None => Err(SubmitError::Unavailable("no leader elected".into())),
            };
            match result {
                Err(e @ (SubmitError::NotLeader { .. } | SubmitError::Unavailable(_))) => {
                    last_error = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
        Err(last_error)
    }

    async fn forward(&self, leader: NodeId, request: ControllerRequest) -> Result<ControllerResponse, SubmitError> {
        let addr = self
            .voters
            .get(&leader)
            .ok_or_else(|| SubmitError::Unavailable(format!("leader {leader} is not a known voter")))?;
        let mut connection = PeerConnection::new(addr.clone(), self.transport.clone());
        match connection.call(&PeerRequest::Submit(request), self.rpc_timeout).await {
            Ok(PeerResponse::Submit(result)) => result,
            Ok(_) => Err(SubmitError::Unavailable(format!("node {leader} answered with the wrong response type"))),
            Err(e) => Err(SubmitError::Unavailable(e.to_string())),
        }
    }

    /// Decides and commits on this node, which must be the active controller.
    async fn submit_local(&self, request: ControllerRequest) -> Result<ControllerResponse, SubmitError> {
        let mut active = self.controller.lock().await;
        self.catch_up().await?;
        self.become_active(&mut active).await?;
        let image = self.image_rx.borrow().clone();
        let decision = active.controller.decide(&image, &request, Instant::now()).map_err(SubmitError::Refused)?;
        self.commit(decision.records).await?;
        let mut response = decision.response;
        if let ControllerResponse::Heartbeat { metadata_index, .. } = &mut response {
            // Everything committed before this answer is applied here (catch_up, commit).
            *metadata_index = self.image_rx.borrow().applied_log_index;
        }
        Ok(response)
    }

    /// A broker's liveness link to this node closed without a release: when this node
    /// is the active controller, that broker must heartbeat soon or be fenced.
    async fn liveness_link_lost(&self, node_id: i32, broker_epoch: i64) {
        if self.raft.metrics().borrow().state != ServerState::Leader {
            return;
        }
        let mut active = self.controller.lock().await;
        let term = self.raft.metrics().borrow().current_term;
        if active.active_term != Some(term) {
            return; // not active yet: becoming active gives every broker a fresh session anyway
        }
        let image = self.image_rx.borrow().clone();
        let grace =
            active
                .controller
                .liveness_link_lost(&image, node_id, broker_epoch, Instant::now());
        drop(active);
        // Fence at the deadline itself rather than at the timer's next tick: every
        // millisecond here is a millisecond producers wait for the new leader.
        let Some(grace) = grace else { return };
        tokio::time::sleep(grace).await;
        let mut active = self.controller.lock().await;
        if active.active_term != Some(self.raft.metrics().borrow().current_term) {
            return;
        }
        let image = self.image_rx.borrow().clone();
        let fenced = match active.controller.fence_expired(&image, Instant::now()) {
            Ok(records) => self.commit(records).await,
            Err(refusal) => Err(SubmitError::Refused(refusal)),
        };
        if let Err(e) = fenced {
            tracing::warn!(node_id, error = %e, "fencing a broker whose liveness link closed failed; the timer retries");
        }
    }

    /// Waits until this leader's image holds everything committed (e.g. by an earlier leader).
    async fn catch_up(&self) -> Result<(), SubmitError> {
        match tokio::time::timeout(self.rpc_timeout, self.raft.ensure_linearizable()).await {
            Err(_) => Err(SubmitError::Unavailable("timed out confirming leadership".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let forward = e.forward_to_leader::<BasicNode>().map(|f| f.leader_id);
                Err(not_leader_or_unavailable(e, forward))
            }
        }
    }

    /// First thing in a new term as leader (before any decision): every broker gets a
    /// fresh session, and a new cluster gets its cluster id.
    async fn become_active(&self, active: &mut ActiveController) -> Result<(), SubmitError> {
        let term = self.raft.metrics().borrow().current_term;
        if active.active_term == Some(term) {
            return Ok(());
        }
        let image = self.image_rx.borrow().clone();
        active.controller.on_become_active(&image, Instant::now());
        if image.cluster_id.is_none() {
            let cluster_id = self.bootstrap_cluster_id.clone().unwrap_or_else(new_cluster_id);
            self.commit(vec![MetadataRecord::ClusterId { cluster_id }]).await?;
        }
        active.active_term = Some(term);
        tracing::info!(node_id = self.node_id, term, "became the active controller");
        Ok(())
    }

    async fn commit(&self, records: Vec<MetadataRecord>) -> Result<(), SubmitError> {
        if records.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(self.rpc_timeout, self.raft.client_write(MetadataBatch { records })).await {
            Err(_) => Err(SubmitError::Unavailable("timed out committing".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let forward = match &e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Some(f.leader_id),
                    _ => None,
                };
                Err(not_leader_or_unavailable(e, forward))
            }
        }
    }

    /// The quorum as the leader sees it; NotLeader on any other node.
    fn leader_quorum_info(&self) -> Result<QuorumInfo, SubmitError> {
        let state = self.raft.metrics().borrow().state;
        if state != ServerState::Leader {
            return Err(SubmitError::NotLeader { leader_id: self.raft.metrics().borrow().current_leader });
        }
        Ok(self.quorum_info())
    }

    async fn forward_describe_quorum(&self, leader: NodeId) -> Result<QuorumInfo, SubmitError> {
        let addr = self
            .voters
            .get(&leader)
            .ok_or_else(|| SubmitError::Unavailable(format!("leader {leader} is not a known voter")))?;
        let mut connection = PeerConnection::new(addr.clone(), self.transport.clone());
        match connection.call(&PeerRequest::DescribeQuorum, self.rpc_timeout).await {
            Ok(PeerResponse::DescribeQuorum(result)) => result,
            Ok(_) => Err(SubmitError::Unavailable(format!("node {leader} answered with the wrong response type"))),
            Err(e) => Err(SubmitError::Unavailable(e.to_string())),
        }
    }

    fn quorum_info(&self) -> QuorumInfo {
        let metrics = self.raft.metrics().borrow().clone();
        self.track_progress(&metrics);
        let progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let is_leader = metrics.state == ServerState::Leader;
        let voters = metrics
            .membership_config
            .membership()
            .voter_ids()
            .map(|node_id| {
                let own = node_id == self.node_id;
                let p = progress.get(&node_id);
                let log_end_offset = if own {
                    metrics.last_log_index.map_or(0, |i| i as i64 + 1)
                } else if is_leader {
                    p.and_then(|p| p.matched).map_or(0, |i| i as i64 + 1)
                } else {
                    -1
                };
                let (last_fetch_timestamp, last_caught_up_timestamp) = match p {
                    _ if own => (now_ms(), now_ms()),
                    Some(p) if is_leader => (p.last_fetch_ms, p.last_caught_up_ms),
                    _ => (-1, -1),
                };
                VoterInfo { node_id, log_end_offset, last_fetch_timestamp, last_caught_up_timestamp }
            })
            .collect();
        QuorumInfo {
            leader_id: metrics.current_leader,
            leader_epoch: metrics.current_term,
            high_watermark: metrics.last_applied.map_or(0, |id| id.index as i64 + 1),
            voters,
        }
    }

    /// On the leader: notes when each voter's replicated position moved or caught up.
    fn track_progress(&self, metrics: &openraft::RaftMetrics<NodeId, BasicNode>) {
        let Some(replication) = &metrics.replication else {
            return;
        };
        let now = now_ms();
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        for (node_id, matched) in replication {
            let matched = matched.map(|id| id.index);
            let entry = progress.entry(*node_id).or_insert_with(|| VoterProgress { last_fetch_ms: -1, last_caught_up_ms: -1, ..Default::default() });
            let caught_up = matched.is_some() && matched == metrics.last_log_index;
            if matched != entry.matched || caught_up {
                entry.last_fetch_ms = now;
            }
            if caught_up {
                entry.last_caught_up_ms = now;
            }
            entry.matched = matched;
        }
    }
}

/// What a voter with an empty metadata log learnt from its peers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PeerLog {
    /// The peer's log holds entries or a snapshot: the quorum exists.
    Present,
    Empty,
    Unreachable,
}

#[derive(Debug, PartialEq)]
enum Bootstrap {
    /// Write the initial membership (every voter of a new cluster does, with the same one).
    Initialize,
    /// The quorum exists: wait for its leader to replicate to this node (a snapshot, then entries).
    Follow,
    /// Ask again.
    Wait,
}

/// A voter whose log is empty bootstraps the quorum only when no peer has a log: a
/// node whose data directory was wiped must be replicated to, as Kafka re-formats such
/// a controller rather than letting it start a cluster of its own. A majority of voters
/// with empty logs (this one included) is a new cluster; with fewer peers reachable it
/// waits, and after `waited_enough` initializes anyway (the same entry every voter writes,
/// which a leader that exists replaces).
fn bootstrap_decision(voters: usize, peers: &[PeerLog], waited_enough: bool) -> Bootstrap {
    if peers.contains(&PeerLog::Present) {
        return Bootstrap::Follow;
    }
    let empty = 1 + peers.iter().filter(|p| **p == PeerLog::Empty).count();
    if empty > voters / 2 || waited_enough {
        Bootstrap::Initialize
    } else {
        Bootstrap::Wait
    }
}

/// How long a voter with an empty log waits for a majority of the voters to answer before
/// it bootstraps regardless.
const BOOTSTRAP_PATIENCE: Duration = Duration::from_secs(15);

async fn bootstrap_when_no_peer_has_a_log(
    raft: Raft,
    node_id: NodeId,
    members: BTreeMap<NodeId, BasicNode>,
    rpc_timeout: Duration,
    transport: Arc<dyn raft::network::PeerTransport>,
) {
    let started = Instant::now();
    let mut connections: BTreeMap<NodeId, PeerConnection> = members
        .iter()
        .filter(|(id, _)| **id != node_id)
        .map(|(id, node)| (*id, PeerConnection::new(node.addr.clone(), transport.clone())))
        .collect();
    loop {
        // Replicated to meanwhile (a peer bootstrapped and its leader reached this node).
        if raft.metrics().borrow().last_log_index.is_some() {
            return;
        }
        let asks = connections.iter_mut().map(|(id, connection)| async move {
            let answer = match connection.call(&PeerRequest::HasMetadataLog, rpc_timeout.min(Duration::from_millis(500))).await {
                Ok(PeerResponse::HasMetadataLog(true)) => PeerLog::Present,
                Ok(PeerResponse::HasMetadataLog(false)) => PeerLog::Empty,
                _ => PeerLog::Unreachable,
            };
            (*id, answer)
        });
        let answers: Vec<(NodeId, PeerLog)> = futures::future::join_all(asks).await;
        let peers: Vec<PeerLog> = answers.iter().map(|(_, a)| *a).collect();
        match bootstrap_decision(members.len(), &peers, started.elapsed() >= BOOTSTRAP_PATIENCE) {
            Bootstrap::Follow => {
                let with_log: Vec<NodeId> = answers.iter().filter(|(_, a)| *a == PeerLog::Present).map(|(id, _)| *id).collect();
                tracing::warn!(
                    node_id,
                    peers_with_a_log = ?with_log,
                    "metadata quorum: this node's metadata log is empty but the quorum exists \
                     (a new or wiped data directory); waiting for the active controller to replicate it here"
                );
                return;
            }
            Bootstrap::Initialize => {
                tracing::info!(node_id, ?answers, "metadata quorum: bootstrapping (no voter has a metadata log)");
                if let Err(e) = raft.initialize(members).await {
                    tracing::info!(error = %e, "metadata quorum: not initialized here (a peer did it first)");
                }
                return;
            }
            Bootstrap::Wait => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// The active controller's timer: becomes active when this node is elected, then
/// fences brokers whose sessions expire.
async fn active_controller_loop(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(shared) = shared.upgrade() else { return };
        let metrics = shared.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            continue;
        }
        shared.track_progress(&metrics);
        let mut active = shared.controller.lock().await;
        if let Err(e) = async {
            shared.catch_up().await?;
            shared.become_active(&mut active).await?;
            let image = shared.image_rx.borrow().clone();
            let records = active.controller.fence_expired(&image, Instant::now()).map_err(SubmitError::Refused)?;
            shared.commit(records).await?;
            if let Some(interval) = active.controller.config().leader_rebalance_interval {
                if active.last_rebalance.elapsed() >= interval {
                    active.last_rebalance = Instant::now();
                    let image = shared.image_rx.borrow().clone();
                    let records = active.controller.rebalance_preferred_leaders(&image).map_err(SubmitError::Refused)?;
                    if !records.is_empty() {
                        tracing::info!(changes = records.len(), "preferred-leader rebalance");
                    }
                    shared.commit(records).await?;
                }
            }
            Ok::<(), SubmitError>(())
        }
        .await
        {
            tracing::warn!(error = %e, "active controller: periodic work failed");
        }
    }
}

/// Kafka's cluster id format: a random UUID, URL-safe base64 without padding (22 characters).
pub fn new_cluster_id() -> String {
    uuid_to_kafka_base64(random_kafka_uuid())
}

/// A random UUID as Kafka's `Uuid.randomUuid` makes them, for cluster and
/// topic ids: never nil, and never one whose base64 form begins with "-",
/// which command-line tools (`kafka-storage format -t`, `kafka-topics
/// --topic-id`) would take for an option.
pub fn random_kafka_uuid() -> uuid::Uuid {
    loop {
        let id = uuid::Uuid::new_v4();
        // The first base64 character is the top six bits of the first byte;
        // "-" is index 62 of the URL-safe alphabet.
        if !id.is_nil() && id.as_bytes()[0] >> 2 != 62 {
            return id;
        }
    }
}

/// Kafka prints UUIDs (cluster ids, topic ids in its tools) as 22 characters of
/// URL-safe base64 without padding.
pub fn uuid_to_kafka_base64(id: uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.into_bytes();
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = String::with_capacity(22);
    for byte in bytes {
        bits = (bits << 8) | byte as u32;
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{bootstrap_decision, Bootstrap, PeerLog};

    #[test]
    fn an_empty_voter_bootstraps_only_when_no_peer_has_a_log() {
        use PeerLog::*;
        // A single node, and a new cluster whose voters all answer (or a majority does).
        assert_eq!(bootstrap_decision(1, &[], false), Bootstrap::Initialize);
        assert_eq!(bootstrap_decision(3, &[Empty, Empty], false), Bootstrap::Initialize);
        assert_eq!(bootstrap_decision(3, &[Empty, Unreachable], false), Bootstrap::Initialize);
        // A wiped node: any peer with a log means the quorum exists.
        assert_eq!(bootstrap_decision(3, &[Present, Unreachable], false), Bootstrap::Follow);
        assert_eq!(bootstrap_decision(3, &[Empty, Present], true), Bootstrap::Follow);
        // Too few voters heard from: wait, then bootstrap anyway.
        assert_eq!(bootstrap_decision(3, &[Unreachable, Unreachable], false), Bootstrap::Wait);
        assert_eq!(bootstrap_decision(5, &[Empty, Unreachable, Unreachable, Unreachable], false), Bootstrap::Wait);
        assert_eq!(bootstrap_decision(3, &[Unreachable, Unreachable], true), Bootstrap::Initialize);
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = super::uuid_to_kafka_base64(uuid::Uuid::from_bytes([0; 16]));
        assert_eq!(id, "AAAAAAAAAAAAAAAAAAAAAA");
        let id = super::uuid_to_kafka_base64(uuid::Uuid::from_bytes([0xff; 16]));
        assert_eq!(id, "_____________________w");
        assert_eq!(super::new_cluster_id().len(), 22);
    }

    #[test]
    fn random_ids_never_begin_with_a_dash() {
        // 0xf8 is the first byte whose top six bits are 62 ("-").
        let dash = super::uuid_to_kafka_base64(uuid::Uuid::from_bytes([0xf8; 16]));
        assert!(dash.starts_with('-'), "{dash}");
        // One id in 64 would begin with "-": 4000 draws miss none by chance.
        for _ in 0..4000 {
            let id = super::uuid_to_kafka_base64(super::random_kafka_uuid());
            assert!(!id.starts_with('-'), "{id}");
        }
    }
}
