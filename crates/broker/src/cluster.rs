//! The broker's side of the cluster (Kafka's `BrokerLifecycleManager` and
//! `BrokerMetadataPublisher`): this node's member of the metadata quorum, the
//! broker's registration and heartbeats, and the replica manager following the
//! committed metadata image.
//!
//! Start-up ([`Cluster::start`], then [`Cluster::join`]): the quorum starts (no
//! `controller.quorum.voters`: a quorum of one over `<log.dirs>/__cluster_metadata-0`,
//! no listener); once the image has a cluster id the broker registers (a new
//! incarnation id each process start; it is fenced until caught up), a data
//! directory of an earlier release has its topics written into the metadata log
//! once, the image follower starts, and `join` returns when the controller has
//! unfenced the broker and the image that says so has been applied.
//!
//! The image follower makes local state match each committed image: topics and
//! partitions are created (every broker keeps a log for every partition of every
//! topic; non-replicas keep theirs empty), topics removed from the image are
//! deleted, configs follow, and each partition whose leader, epochs, replicas or
//! ISR changed gets `become_leader` / `become_follower`. Then every
//! [`LeadershipListener`] hears of it: the group and transaction coordinators
//! load the `__consumer_offsets` / `__transaction_state` partitions this broker
//! now leads and unload the others. Both topics are in the image; a local copy
//! an earlier release kept out of it is imported once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_controller::controller::{AlterPartition, ControllerConfig};
use runnel_controller::image::PartitionImage;
use runnel_controller::records::{BrokerEndpoint, NO_LEADER};
use runnel_controller::{ControllerRequest, ControllerResponse, MetadataImage, Quorum, QuorumConfig, SubmitError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::partition::{IsrChange, Partition, Role};
use crate::replica_manager::{AlterPartitionSender, AlteredPartition, ReplicaManager};
use crate::StartError;

/// MetaStore key: the data directory's topics are in the metadata log.
const MIGRATED_KEY: &str = "metadata.migrated";
/// MetaStore key prefix: the data directory's own internal topic (releases before
/// the replicated `__consumer_offsets` / `__transaction_state` kept them out of
/// the metadata log) is in the metadata log. Followed by the topic name.
const INTERNAL_MIGRATED_KEY_PREFIX: &str = "metadata.migrated.";

/// Told after each committed image is applied to the replica manager (Kafka's
/// coordinator `onElection` / `onResignation`): a coordinator of an internal
/// topic loads the partitions this broker now leads and unloads the others.
pub trait LeadershipListener: Send + Sync {
    fn leaderships_changed(self: Arc<Self>);
}

/// How long an admin request waits for its result to reach this broker's image.
pub const APPLY_WAIT: Duration = Duration::from_secs(10);

pub struct Cluster {
    quorum: Quorum,
    node_id: i32,
    incarnation_id: Uuid,
    /// The data directory's id, sent with every registration (set by `join`).
    directory_id: std::sync::OnceLock<Uuid>,
    /// -1 until registered.
    broker_epoch: AtomicI64,
    shutting_down: AtomicBool,
    /// The image the replica manager has applied: what the APIs answer from.
    applied: watch::Sender<Arc<MetadataImage>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    leadership_listeners: Mutex<Vec<Weak<dyn LeadershipListener>>>,
    session: Mutex<Session>,
    /// Brokers this node saw fenced, by node id: their broker epoch and when.
    /// Metadata keeps listing them for `FENCED_BROKER_LISTED_FOR` (see `live_brokers`).
    recently_fenced: Mutex<std::collections::HashMap<i32, (i64, Instant)>>,
}

/// How long Metadata keeps listing a broker after it was fenced. Kafka drops it
/// at once; librdkafka then decommissions that broker's handle in the same
/// answer that moves its partitions to their new leader, and the decommission
/// hands them back to its internal broker, so the producer finds the new
/// leader only on its next 1 s re-query. Listed a little longer, the handle
/// goes in a later answer, after the partitions left it: a killed leader's
/// partitions are produced to about one second sooner.
const FENCED_BROKER_LISTED_FOR: Duration = Duration::from_secs(3);

/// This broker's session with the controller, as the broker itself can tell it.
///
/// The controller fences a broker whose heartbeats stopped for
/// `broker.session.timeout.ms`, counted from when it received the last one, and
/// only then gives its leaderships to others. The broker counts from when it
/// sent its last answered heartbeat, so it knows it may be fenced no later than
/// the controller fences it. From then on its image may be stale (another broker
/// may already coordinate its groups), so it stops acting as a coordinator or
/// accepting produces until it has applied the metadata log as far as the
/// controller had when it answered a heartbeat again. Without this, a broker cut
/// off from the others served OffsetFetch from its cache while another broker
/// coordinated the group: committed offsets read back older than before.
/// A single node has nobody to lose leadership to and holds no lease.
struct Session {
    /// None for a single node: never lapses.
    timeout: Option<Duration>,
    /// When the last heartbeat (or registration) that was answered was sent.
    answered_sent_at: Option<Instant>,
    /// Set once the session lapsed; cleared when the applied image reaches `catch_up_to`.
    lapsed: bool,
    /// The controller's applied metadata index in the first answer after the lapse.
    catch_up_to: Option<u64>,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        match (self.timeout, self.answered_sent_at) {
            (None, _) => false,
            (Some(timeout), Some(sent)) => now.saturating_duration_since(sent) >= timeout,
            (Some(_), None) => true,
        }
    }
}

fn quorum_error(e: impl std::fmt::Display) -> StartError {
    StartError::Quorum(e.to_string())
}

/// A controller refusal or failure as the Kafka error a client gets.
pub fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Refused(refusal) => ApiError::new(
            ResponseError::try_from_code(refusal.code).unwrap_or(ResponseError::UnknownServerError),
            refusal.message,
        ),
        SubmitError::NotLeader { .. } | SubmitError::Unavailable(_) => {
            ApiError::new(ResponseError::RequestTimedOut, format!("the metadata quorum did not answer: {e}"))
        }
    }
}

impl Cluster {
    /// Starts this node's quorum member. Refuses what is not supported yet.
    pub async fn start(config: &BrokerConfig, bootstrap_cluster_id: &str) -> Result<Arc<Cluster>, StartError> {
        let roles = &config.process_roles;
        if !(roles.iter().any(|r| r == "broker") && roles.iter().any(|r| r == "controller")) {
            return Err(StartError::Quorum(format!(
                "process.roles={}: only combined nodes (broker,controller) are supported yet",
                roles.join(",")
            )));
        }
        if config.controller_quorum_voters.is_empty() && !config.controller_quorum_bootstrap_servers.is_empty() {
            return Err(StartError::Quorum(
                "controller.quorum.bootstrap.servers (KIP-853 dynamic quorums) is not supported yet; give controller.quorum.voters=ID@HOST:PORT,...".into(),
            ));
        }
        let node_id = u64::try_from(config.node_id)
            .map_err(|_| StartError::Quorum(format!("node.id={} must not be negative", config.node_id)))?;
        let (mut quorum_config, listener) = if config.controller_quorum_voters.is_empty() {
            (QuorumConfig::single_node(node_id, config.data_dir.clone()), None)
        } else {
            let voters: BTreeMap<u64, String> =
                config.controller_quorum_voters.iter().map(|(id, addr)| (*id as u64, addr.clone())).collect();
            let own = voters.get(&node_id).cloned().ok_or_else(|| {
                StartError::Quorum(format!(
                    "node.id={node_id} is not among controller.quorum.voters ({})",
                    voters.keys().map(ToString::to_string).collect::<Vec<_>>().join(",")
                ))
            })?;
            // The controller listener binds what `listeners` says for it, else the voter address.
            let bind = config
                .listeners
                .iter()
                .find(|l| config.controller_listener_names.contains(&l.name))
                .map(|l| l.socket_address())
                .unwrap_or(own);
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| StartError::Listen { addr: bind.clone(), source: e })?;
            let mut quorum_config = QuorumConfig::new(node_id, voters, config.data_dir.clone());
            let election_timeout = Duration::from_millis(config.controller_quorum_election_timeout_ms);
            quorum_config.election_timeout = (election_timeout, election_timeout * 2);
            quorum_config.raft_heartbeat_interval = (election_timeout / 8).min(Duration::from_millis(100));
            (quorum_config, Some(listener))
        };
        quorum_config.controller = ControllerConfig {
            broker_session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
            unclean_leader_election: config.unclean_leader_election_enable,
            leader_rebalance_interval: config
                .auto_leader_rebalance_enable
                .then(|| Duration::from_secs(config.leader_imbalance_check_interval_seconds)),
            colocated_broker: Some(config.node_id),
            // A held link closes without its release only when the broker's process
            // died (or the network reset it: then the live broker is unfenced at its
            // next heartbeat, as after a lapsed session): fence at once.
            link_loss_grace: Duration::ZERO,
        };
        quorum_config.bootstrap_cluster_id = Some(bootstrap_cluster_id.to_string());
        if !config.controller_quorum_voters.is_empty() {
            quorum_config.transport = crate::security::controller_transport::controller_transport(config).map_err(StartError::Security)?;
        }
        let quorum = Quorum::start_with_listener(quorum_config, listener).await.map_err(quorum_error)?;
        let (applied, _) = watch::channel(Arc::new(MetadataImage::default()));
        Ok(Arc::new(Cluster {
            quorum,
            node_id: config.node_id,
            incarnation_id: Uuid::new_v4(),
            directory_id: std::sync::OnceLock::new(),
            broker_epoch: AtomicI64::new(-1),
            shutting_down: AtomicBool::new(false),
            applied,
            tasks: Mutex::new(Vec::new()),
            leadership_listeners: Mutex::new(Vec::new()),
            session: Mutex::new(Session {
                timeout: (!config.controller_quorum_voters.is_empty())
                    .then(|| Duration::from_millis(config.broker_session_timeout_ms)),
                answered_sent_at: None,
                lapsed: false,
                catch_up_to: None,
            }),
            recently_fenced: Mutex::new(std::collections::HashMap::new()),
        }))
    }

    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    /// The committed metadata as this broker has applied it.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.applied.borrow().clone()
    }

    /// Whether this broker may act on its image as a leader and coordinator: its
    /// session with the controller has not lapsed (see [`Session`]). Checked by
    /// the coordinators and Produce on every request.
    pub fn in_session(&self) -> bool {
        let session = self.session.lock();
        !session.lapsed && !session.expired(Instant::now())
    }

    /// A heartbeat or registration sent at `sent_at` was answered; `metadata_index`:
    /// how far the controller had applied the metadata log then (None: unknown).
    fn session_answered(&self, sent_at: Instant, metadata_index: Option<u64>) {
        let mut session = self.session.lock();
        // Expired at any moment since the last answer means expired now, before this one counts.
        self.mark_lapsed_if_expired(&mut session);
        session.answered_sent_at = Some(session.answered_sent_at.map_or(sent_at, |t| t.max(sent_at)));
        if session.lapsed && session.catch_up_to.is_none() {
            session.catch_up_to = metadata_index;
        }
        drop(session);
        self.resume_session_if_caught_up();
    }

    /// Marks the session lapsed if no heartbeat sent within the session timeout was answered.
    fn check_session_lapse(&self) {
        self.mark_lapsed_if_expired(&mut self.session.lock());
    }

    fn mark_lapsed_if_expired(&self, session: &mut Session) {
        if !session.lapsed && session.answered_sent_at.is_some() && session.expired(Instant::now()) {
            session.lapsed = true;
            session.catch_up_to = None;
            tracing::warn!(
                node_id = self.node_id,
                "no heartbeat answered within broker.session.timeout.ms: the controller may have fenced this broker \
                 and moved its leaderships; it stops coordinating and accepting produces until its metadata has caught up"
            );
        }
    }

    /// Ends a lapse once the applied image holds everything the controller had
    /// applied when it answered again.
    fn resume_session_if_caught_up(&self) {
        let applied = self.applied.borrow().applied_log_index;
        let mut session = self.session.lock();
        if session.lapsed && session.catch_up_to.is_some_and(|index| applied >= index) {
            session.lapsed = false;
            session.catch_up_to = None;
            tracing::info!(node_id = self.node_id, metadata_index = applied, "metadata caught up after the session lapse; acting on it again");
        }
    }

    /// The active controller if known, else -1 (what Metadata and DescribeCluster report).
    pub fn controller_id(&self) -> i32 {
        self.quorum.leader_id().and_then(|id| i32::try_from(id).ok()).unwrap_or(-1)
    }

    /// Calls `listener` after every image applied from now on (it checks the
    /// current leaderships itself when it registers).
    pub fn add_leadership_listener(&self, listener: Weak<dyn LeadershipListener>) {
        self.leadership_listeners.lock().push(listener);
    }

    fn notify_leadership_listeners(&self) {
        let listeners: Vec<Arc<dyn LeadershipListener>> = {
            let mut all = self.leadership_listeners.lock();
            all.retain(|l| l.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        for listener in listeners {
            listener.leaderships_changed();
        }
    }

    /// The number of nodes the cluster is configured with (every voter is a broker).
    pub fn configured_nodes(config: &BrokerConfig) -> usize {
        config.controller_quorum_voters.len().max(1)
    }

    /// Runs a request on the active controller.
    pub async fn submit(&self, request: ControllerRequest) -> Result<ControllerResponse, ApiError> {
        self.quorum.submit(request).await.map_err(submit_error)
    }

    /// Waits (at most `timeout`) until the applied image satisfies `condition`.
    pub async fn wait_for_image(&self, timeout: Duration, condition: impl Fn(&MetadataImage) -> bool) -> bool {
        let mut rx = self.applied.subscribe();
        let wait = async {
            loop {
                if condition(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok() && condition(&self.applied.borrow())
    }

    /// Registers the broker, moves an earlier release's topics into the metadata
    /// log, starts the image follower and the heartbeats, and waits until the
    /// controller has unfenced this broker. Returns the cluster id.
    pub async fn join(self: &Arc<Self>, config: &Arc<BrokerConfig>, replicas: &Arc<ReplicaManager>) -> Result<String, StartError> {
        let committed = self.quorum.image_watch();
        let cluster_id = wait_logging("the metadata quorum to elect a controller and commit the cluster id", || {
            committed.borrow().cluster_id.clone()
        })
        .await;
        let endpoints = registered_endpoints(config);
        let directory_id = load_or_create_directory_id(replicas).map_err(StartError::Storage)?;
        let _ = self.directory_id.set(directory_id);
        self.register(&endpoints, config.broker_rack.clone()).await;
        let mut imported = self.migrate_local_topics(replicas).await?;
        for internal in [crate::coordinator::OFFSETS_TOPIC, crate::txn_coordinator::TRANSACTION_STATE_TOPIC] {
            imported.extend(self.migrate_internal_topic(replicas, internal).await?);
        }
        replicas.set_alter_partition_sender(Arc::new(ControllerAlterPartition {
            cluster: Arc::downgrade(self),
            replicas: Arc::downgrade(replicas),
        }));
        let follower = tokio::spawn(follow_image(Arc::downgrade(self), Arc::downgrade(replicas), committed, imported));
        let heartbeats = tokio::spawn(heartbeat_loop(
            Arc::downgrade(self),
            Duration::from_millis(config.broker_heartbeat_interval_ms),
            endpoints,
            config.broker_rack.clone(),
        ));
        self.tasks.lock().extend([follower, heartbeats]);
        if !config.controller_quorum_voters.is_empty() {
            let link = tokio::spawn(liveness_link_loop(Arc::downgrade(self)));
            self.tasks.lock().push(link);
        }
        let node_id = self.node_id;
        let this = self.clone();
        wait_logging("the controller to unfence this broker", move || {
            let epoch = this.broker_epoch();
            this.image().brokers.get(&node_id).filter(|b| b.broker_epoch == epoch && !b.fenced).map(|_| ())
        })
        .await;
        Ok(cluster_id)
    }

    /// Registers until the controller accepts (a node id still held by a live
    /// earlier incarnation is refused until its session expires).
    async fn register(&self, endpoints: &[BrokerEndpoint], rack: Option<String>) {
        let directory_id = self.directory_id.get().copied().unwrap_or_else(Uuid::nil);
        let started = Instant::now();
        loop {
            let request = ControllerRequest::RegisterBroker {
                node_id: self.node_id,
                incarnation_id: self.incarnation_id,
                endpoints: endpoints.to_vec(),
                rack: rack.clone(),
                directory_id,
            };
            let sent_at = Instant::now();
            match self.quorum.submit(request).await {
                Ok(ControllerResponse::BrokerRegistered { broker_epoch }) => {
                    self.broker_epoch.store(broker_epoch, Ordering::Release);
                    // The controller's index is unknown here: a lapsed session waits for a heartbeat's.
                    self.session_answered(sent_at, None);
                    tracing::info!(node_id = self.node_id, broker_epoch, incarnation_id = %self.incarnation_id, "registered with the controller");
                    return;
                }
                Ok(other) => tracing::error!(?other, "unexpected answer to the broker registration"),
                Err(e) => {
                    if started.elapsed() > Duration::from_secs(5) {
                        tracing::warn!(error = %e, "broker registration refused or failed; retrying");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Once per data directory: the topics an earlier release created (they are only
    /// in the data directory's metadata) go into the metadata log with their ids,
    /// partition counts, configs and leader epochs. Internal topics stay local.
    /// Returns the ids of the topics imported now.
    async fn migrate_local_topics(&self, replicas: &Arc<ReplicaManager>) -> Result<Vec<Uuid>, StartError> {
        let storage = |e: runnel_storage::StorageError| StartError::Storage(e);
        if replicas.meta().get_value(MIGRATED_KEY).map_err(storage)?.is_some() {
            return Ok(Vec::new());
        }
        let mut imported = Vec::new();
        for topic in replicas.topics().into_iter().filter(|t| !t.internal) {
            let leader_epochs = topic.partitions().iter().map(|p| p.leader_epoch()).collect();
            let request = ControllerRequest::ImportTopic {
                name: topic.name.to_string(),
                topic_id: topic.id,
                node_id: self.node_id,
                leader_epochs,
                configs: topic.config_overrides(),
            };
            match self.quorum.submit(request).await {
                Ok(_) => {
                    imported.push(topic.id);
                    tracing::info!(topic = %topic.name, "topic written into the cluster metadata log")
                }
                Err(e) => {
                    return Err(StartError::Quorum(format!(
                        "writing topic {} of the data directory into the cluster metadata: {e}",
                        topic.name
                    )))
                }
            }
        }
        replicas.meta().put_value(MIGRATED_KEY, "true").map_err(storage)?;
        Ok(imported)
    }

    /// Once per data directory: an internal topic (`__consumer_offsets`,
    /// `__transaction_state`) an earlier release kept out of the metadata log goes
    /// into it with its id, partition count and configs (replicated on this node
    /// alone), so its commits / transaction states stay. If the cluster already
    /// has one (another node imported its own first), the local copy is replaced
    /// by the cluster's when the image is applied.
    async fn migrate_internal_topic(&self, replicas: &Arc<ReplicaManager>, name: &str) -> Result<Option<Uuid>, StartError> {
        let storage = |e: runnel_storage::StorageError| StartError::Storage(e);
        let migrated_key = format!("{INTERNAL_MIGRATED_KEY_PREFIX}{name}");
        if replicas.meta().get_value(&migrated_key).map_err(storage)?.is_some() {
            return Ok(None);
        }
        let mut imported = None;
        if let Some(topic) = replicas.topic(name) {
            let request = ControllerRequest::ImportTopic {
                name: name.to_string(),
                topic_id: topic.id,
                node_id: self.node_id,
                leader_epochs: topic.partitions().iter().map(|p| p.leader_epoch()).collect(),
                configs: topic.config_overrides(),
            };
            match self.quorum.submit(request).await {
                Ok(_) => {
                    imported = Some(topic.id);
                    tracing::info!(partitions = topic.partition_count(), "{name} of the data directory written into the cluster metadata log");
                }
                Err(SubmitError::Refused(refusal)) if refusal.code == ResponseError::TopicAlreadyExists.code() => {
                    tracing::warn!(%refusal, "the cluster already has its own {name}; this node's local copy (and the commits only it held) is replaced by the cluster's");
                }
                Err(e) => return Err(StartError::Quorum(format!("writing {name} of the data directory into the cluster metadata: {e}"))),
            }
        }
        replicas.meta().put_value(&migrated_key, "true").map_err(storage)?;
        Ok(imported)
    }

    /// Controlled shutdown (Kafka's): the controller moves this broker's
    /// leaderships to other ISR members and fences it; waits (at most `timeout`)
    /// until the applied image shows it leads nothing.
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        let epoch = self.broker_epoch();
        if epoch < 0 {
            return;
        }
        let request = ControllerRequest::BrokerHeartbeat {
            node_id: self.node_id,
            broker_epoch: epoch,
            want_fence: false,
            want_shutdown: true,
        };
        match tokio::time::timeout(timeout, self.quorum.submit(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "controlled shutdown refused; stopping anyway");
                return;
            }
            Err(_) => {
                tracing::warn!("controlled shutdown: no answer from the controller; stopping anyway");
                return;
            }
        }
        let node_id = self.node_id;
        let moved = self
            .wait_for_image(timeout, |image| {
                image.topics.values().all(|t| t.partitions.values().all(|p| p.leader != node_id))
            })
            .await;
        tracing::info!(node_id, leaderships_moved = moved, "controlled shutdown");
    }

    /// Stops the follower, the heartbeats and the quorum member.
    pub async fn stop(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().drain(..).collect();
        for task in tasks {
            task.abort();
        }
        self.quorum.stop().await;
    }
}

/// Polls `probe` until it answers, logging every 10 s what is awaited (a cluster
/// node waits here until enough voters are up).
async fn wait_logging<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    let mut next_log = Duration::from_secs(10);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if started.elapsed() >= next_log {
            tracing::info!(waited_s = started.elapsed().as_secs(), "waiting for {what}");
            next_log += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Heartbeats every `interval`: asks to be unfenced once the applied image
/// holds this registration; registers again when the controller no longer
/// knows this incarnation (e.g. it was unregistered).
async fn heartbeat_loop(cluster: Weak<Cluster>, interval: Duration, endpoints: Vec<BrokerEndpoint>, rack: Option<String>) {
    let mut first = true;
    let mut failing_since: Option<Instant> = None;
    loop {
        if !first {
            tokio::time::sleep(interval).await;
        }
        let Some(cluster) = cluster.upgrade() else { return };
        if cluster.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let epoch = cluster.broker_epoch();
        let caught_up = cluster.image().brokers.get(&cluster.node_id).is_some_and(|b| b.broker_epoch == epoch);
        let request = ControllerRequest::BrokerHeartbeat {
            node_id: cluster.node_id,
            broker_epoch: epoch,
            want_fence: !caught_up,
            want_shutdown: false,
        };
        cluster.check_session_lapse();
        let sent_at = Instant::now();
        match cluster.quorum.submit(request).await {
            Ok(answer) => {
                if let ControllerResponse::Heartbeat { metadata_index, .. } = answer {
                    cluster.session_answered(sent_at, Some(metadata_index));
                }
                first = !caught_up;
                if let Some(since) = failing_since.take() {
                    tracing::info!(failed_for_ms = since.elapsed().as_millis() as u64, "heartbeats answered again");
                }
            }
            Err(SubmitError::Refused(refusal))
                if refusal.code == ResponseError::StaleBrokerEpoch.code()
                    || refusal.code == ResponseError::BrokerIdNotRegistered.code() =>
            {
                tracing::warn!(%refusal, "the controller does not know this broker's registration; registering again");
                cluster.register(&endpoints, rack.clone()).await;
            }
            Err(e) => {
                if failing_since.is_none() {
                    tracing::warn!(error = %e, "broker heartbeat failed");
                    failing_since = Some(Instant::now());
                }
                first = false;
            }
        }
    }
}

/// Keeps this broker's liveness link to the active controller open (multi-node
/// only), so that the controller learns at once when this process dies (the
/// kernel closes the link) instead of after `broker.session.timeout.ms`. Opened
/// again with each new registration (broker epoch) and each new controller.
async fn liveness_link_loop(cluster: Weak<Cluster>) {
    loop {
        let Some(this) = cluster.upgrade() else {
            return;
        };
        if this.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let epoch = this.broker_epoch();
        let for_until = Arc::downgrade(&this);
        let epoch_changed_or_stopping = async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match for_until.upgrade() {
                    Some(c)
                        if c.broker_epoch() == epoch
                            && !c.shutting_down.load(Ordering::Acquire) => {}
                    _ => return,
                }
            }
        };
        if epoch < 0 {
            drop(this);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // Holds the cluster while the link is up: `stop` aborts this task first.
        let held = this
            .quorum
            .hold_liveness_link(this.node_id, epoch, epoch_changed_or_stopping)
            .await;
        drop(this);
        if let Err(e) = held {
            tracing::debug!(error = %e, "liveness link to the controller");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Applies every committed image to the replica manager, then publishes it as applied.
/// `imported`: topic ids this start wrote into the metadata log (see [`delete_stray_topics`]).
async fn follow_image(
    cluster: Weak<Cluster>,
    replicas: Weak<ReplicaManager>,
    mut committed: watch::Receiver<Arc<MetadataImage>>,
    imported: Vec<Uuid>,
) {
    let mut previous: Option<Arc<MetadataImage>> = None;
    let mut strays_checked = false;
    let mut caught_up = false;
    loop {
        let image = committed.borrow_and_update().clone();
        let (Some(cluster), Some(manager)) = (cluster.upgrade(), replicas.upgrade()) else { return };
        let node_id = cluster.node_id;
        // A restarting node replays its metadata log: the images before its own
        // current registration are history (in one of them it may still lead a
        // partition another node has led since, and a coordinator would load it
        // and answer from an old log). Nothing is applied until the image holds
        // this start's registration, as Kafka's broker publishes no metadata
        // before it has caught up with the quorum.
        caught_up = caught_up || image.brokers.get(&node_id).is_some_and(|b| b.broker_epoch == cluster.broker_epoch());
        if !caught_up {
            drop(cluster);
            if committed.changed().await.is_err() {
                return;
            }
            continue;
        }
        let prev = previous.clone();
        let next = image.clone();
        // Strays are judged only on an image at least as new as everything this
        // start wrote (its registration and its imports): an older one may not
        // know a topic yet that this broker's logs belong to.
        let complete = !strays_checked
            && image.brokers.get(&node_id).is_some_and(|b| b.broker_epoch == cluster.broker_epoch())
            && imported.iter().all(|id| image.topics.contains_key(id));
        strays_checked |= complete;
        // Creating and deleting logs is blocking work.
        let applied = tokio::task::spawn_blocking(move || {
            if complete {
                delete_stray_topics(&manager, &next);
            }
            apply_image(&manager, node_id, prev.as_deref(), &next)
        })
        .await;
        if let Err(e) = applied {
            tracing::error!(error = %e, "applying the cluster metadata failed");
        }
        cluster.note_fenced_brokers(previous.as_deref(), &image);
        cluster.applied.send_replace(image.clone());
        cluster.resume_session_if_caught_up();
        cluster.notify_leadership_listeners();
        previous = Some(image);
        drop(cluster);
        if committed.changed().await.is_err() {
            return;
        }
    }
}

/// Deletes the local logs of topics the cluster metadata no longer has (Kafka's
/// stray logs): deleted while this broker was down, or a crash between the
/// deletion's commit and the removal of the logs. Internal topics are local.
fn delete_stray_topics(replicas: &Arc<ReplicaManager>, image: &MetadataImage) {
    for topic in replicas.topics() {
        if topic.internal || image.topics.contains_key(&topic.id) {
            continue;
        }
        tracing::warn!(topic = %topic.name, topic_id = %topic.id, "deleting the logs of a topic the cluster metadata no longer has");
        if let Err(e) = replicas.delete_topic(&topic.name) {
            tracing::error!(topic = %topic.name, error = %e, "deleting a stray topic failed");
        }
    }
}

/// The data directory's id (Kafka's `directory.id` in `meta.properties`): made
/// with the directory, so a wiped directory comes back with another one and the
/// controller knows this node's replicas are empty.
fn load_or_create_directory_id(replicas: &ReplicaManager) -> Result<Uuid, runnel_storage::StorageError> {
    const KEY: &str = "directory.id";
    if let Some(id) = replicas.meta().get_value(KEY)?.and_then(|v| Uuid::parse_str(&v).ok()) {
        return Ok(id);
    }
    let id = Uuid::new_v4();
    replicas.meta().put_value(KEY, &id.to_string())?;
    Ok(id)
}

/// The endpoints this broker registers: every client listener's advertised
/// address, the inter-broker listener first (other brokers replicate from the
/// first endpoint).
fn registered_endpoints(config: &BrokerConfig) -> Vec<BrokerEndpoint> {
    let inter_broker = config.inter_broker_listener().map(|c| c.listener.name).unwrap_or_default();
    let protocol_of = |name: &str| {
        config.listener_security_protocols.get(name).cloned().unwrap_or_else(|| "PLAINTEXT".into())
    };
    let mut endpoints: Vec<BrokerEndpoint> = config
        .advertised
        .iter()
        .map(|a| BrokerEndpoint { name: a.name.clone(), host: a.host.clone(), port: a.port, security_protocol: protocol_of(&a.name) })
        .collect();
    endpoints.sort_by_key(|e| e.name != inter_broker);
    if endpoints.is_empty() {
        endpoints.push(BrokerEndpoint {
            name: inter_broker.clone(),
            host: config.advertised_host.clone(),
            port: u16::try_from(config.advertised_port).unwrap_or(0),
            security_protocol: protocol_of(&inter_broker),
        });
    }
    endpoints
}

/// A broker's endpoint on the named listener. Brokers registered before
/// listeners had names in common (an earlier release's single endpoint) are
/// reached on their only endpoint.
pub fn endpoint_on<'a>(endpoints: &'a [BrokerEndpoint], listener: &str) -> Option<&'a BrokerEndpoint> {
    endpoints.iter().find(|e| e.name == listener).or(match endpoints {
        [only] => Some(only),
        _ => None,
    })
}

/// Makes the replica manager match `image`.
fn apply_image(replicas: &Arc<ReplicaManager>, node_id: i32, previous: Option<&MetadataImage>, image: &MetadataImage) {
    for broker in image.brokers.values() {
        if broker.node_id == node_id {
            continue;
        }
        if let Some(endpoint) = broker.endpoints.first() {
            match resolve(&endpoint.host, endpoint.port) {
                Some(address) if replicas.broker_endpoint(broker.node_id).is_none_or(|(a, host)| a != address || *host != *endpoint.host) => {
                    replicas.set_broker_address(broker.node_id, address, &endpoint.host)
                }
                Some(_) => {}
                None => tracing::warn!(node_id = broker.node_id, host = %endpoint.host, "cannot resolve a broker's address"),
            }
        }
    }
    // Topics gone from the image since the last one applied.
    if let Some(previous) = previous {
        for (topic_id, topic) in &previous.topics {
            if image.topics.contains_key(topic_id) {
                continue;
            }
            if replicas.topic(&topic.name).is_some_and(|local| local.id == *topic_id) {
                if let Err(e) = replicas.delete_topic(&topic.name) {
                    tracing::error!(topic = %topic.name, error = %e, "deleting a topic the cluster metadata removed failed");
                }
            }
        }
    }
    for topic in image.topics.values() {
        let configs = image.topic_configs(&topic.name).cloned().unwrap_or_default();
        let count = topic.partitions.keys().next_back().map_or(0, |last| last + 1);
        if let Some(local) = replicas.topic(&topic.name) {
            if local.id != topic.topic_id {
                // Deleted and created again while this broker was away.
                tracing::info!(topic = %topic.name, "the cluster metadata has another topic of this name; replacing the local one");
                if let Err(e) = replicas.delete_topic(&topic.name) {
                    tracing::error!(topic = %topic.name, error = %e, "deleting the replaced topic failed");
                    continue;
                }
            }
        }
        let prepare = |partition: &Arc<Partition>| {
            if let Some(state) = topic.partitions.get(&partition.index) {
                apply_partition(replicas, partition, state, node_id);
            }
        };
        let local = match replicas.topic(&topic.name) {
            Some(local) => local,
            None => match replicas.create_topic_from_image(&topic.name, topic.topic_id, count, configs.clone(), prepare) {
                Ok(local) => local,
                Err(e) => {
                    tracing::error!(topic = %topic.name, error = %e, "creating a topic of the cluster metadata failed");
                    continue;
                }
            },
        };
        if (local.partition_count() as i32) < count {
            if let Err(e) = replicas.add_partitions_from_image(&topic.name, count, prepare) {
                tracing::error!(topic = %topic.name, error = %e, "adding partitions of the cluster metadata failed");
            }
        }
        if local.config_overrides() != configs {
            if let Err(e) = replicas.set_topic_configs(&topic.name, configs, false) {
                tracing::error!(topic = %topic.name, error = %e, "applying topic configs of the cluster metadata failed");
            }
        }
        for partition in local.partitions() {
            if let Some(state) = topic.partitions.get(&partition.index) {
                apply_partition(replicas, &partition, state, node_id);
            }
        }
    }
}

/// One partition's role from the image: leader, follower of the leader, or (not
/// a replica, or no leader) a follower of nobody, which takes no writes. Acts on
/// the partition itself (it may not be visible in the replica manager yet); the
/// replica fetcher for its leader is started once it is.
fn apply_partition(replicas: &Arc<ReplicaManager>, partition: &Arc<Partition>, state: &PartitionImage, node_id: i32) {
    let local = partition.replica_state();
    let (topic, index) = (&*partition.topic, partition.index);
    if state.leader == node_id {
        let same_term = local.role == Role::Leader && local.leader_epoch == state.leader_epoch;
        if same_term && local.replicas != state.replicas {
            // A reassignment moved replicas, not the leadership.
            partition.update_assignment(state.partition_epoch, state.replicas.clone(), state.isr.clone());
            tracing::info!(topic, partition = index, replicas = ?state.replicas, isr = ?state.isr, "replicas changed");
            return;
        }
        if same_term {
            if local.partition_epoch != state.partition_epoch || local.isr != state.isr {
                partition.apply_isr(state.partition_epoch, state.isr.clone());
            }
            return;
        }
        match partition.become_leader(state.leader_epoch, state.partition_epoch, state.replicas.clone(), state.isr.clone(), crate::now_ms()) {
            Ok(()) => tracing::info!(topic, partition = index, leader_epoch = state.leader_epoch, isr = ?state.isr, "became leader"),
            Err(e) => tracing::error!(topic, partition = index, error = %e, "becoming leader failed"),
        }
        return;
    }
    let is_replica = state.replicas.contains(&node_id);
    let leader = if is_replica { state.leader } else { NO_LEADER };
    let unchanged = local.role == (Role::Follower { leader_id: leader })
        && local.leader_epoch == state.leader_epoch
        && local.partition_epoch == state.partition_epoch;
    if !unchanged {
        partition.become_follower(leader, state.leader_epoch, state.partition_epoch);
        tracing::info!(topic, partition = index, leader, leader_epoch = state.leader_epoch, "became follower");
    }
    if !is_replica && (partition.log_end_offset() > 0 || partition.offsets().log_start_offset > 0) {
        // No longer a replica (a reassignment moved it away, Kafka's StopReplica with
        // deletion): the records go, the empty log stays, as every non-replica's does.
        // Only now that it is a follower of nobody: a leader would take writes into the
        // emptied log and count its followers' old progress as their acknowledgement.
        match partition.truncate_fully_and_start_at(0, None) {
            Ok(()) => tracing::info!(topic, partition = index, replicas = ?state.replicas, "no longer a replica: deleted this broker's copy of the log"),
            Err(e) => tracing::error!(topic, partition = index, error = %e, "deleting the log of a partition this broker no longer replicates failed"),
        }
    }
    if leader != NO_LEADER && replicas.topic(topic).is_some() {
        crate::replica_fetcher::ensure_fetcher(replicas, leader);
    }
}

fn resolve(host: &str, port: u16) -> Option<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(std::net::SocketAddr::new(ip, port));
    }
    (host, port).to_socket_addrs().ok()?.next()
}

/// ISR changes go to the active controller as AlterPartition, with this broker's
/// epoch and the partition's leader and partition epochs: a fenced or stale
/// leader is refused, keeps its larger ISR and so acknowledges nothing new.
struct ControllerAlterPartition {
    cluster: Weak<Cluster>,
    replicas: Weak<ReplicaManager>,
}

impl AlterPartitionSender for ControllerAlterPartition {
    fn alter_partition(&self, topic: &str, partition: i32, change: IsrChange) -> BoxFuture<'static, Result<AlteredPartition, ResponseError>> {
        let cluster = self.cluster.upgrade();
        let topic_id = self.replicas.upgrade().and_then(|r| r.topic(topic)).map(|t| t.id);
        Box::pin(async move {
            let (Some(cluster), Some(topic_id)) = (cluster, topic_id) else {
                return Err(ResponseError::UnknownTopicOrPartition);
            };
            let request = ControllerRequest::AlterPartition(AlterPartition {
                broker_id: cluster.node_id,
                broker_epoch: cluster.broker_epoch(),
                topic_id,
                partition,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                new_isr: change.new_isr,
            });
            match cluster.quorum.submit(request).await {
                Ok(ControllerResponse::PartitionAltered { leader_epoch, partition_epoch, isr, .. }) => Ok(AlteredPartition { leader_epoch, partition_epoch, isr }),
                Ok(_) => Err(ResponseError::UnknownServerError),
                Err(SubmitError::Refused(refusal)) => {
                    Err(ResponseError::try_from_code(refusal.code).unwrap_or(ResponseError::UnknownServerError))
                }
                Err(_) => Err(ResponseError::RequestTimedOut),
            }
        })
    }
}

/// What Metadata / DescribeTopicPartitions report for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas whose broker is fenced or not registered.
    pub offline: Vec<i32>,
}

impl Cluster {
    /// The partition as the applied image has it; a topic the image does not hold
    /// (an internal topic kept by this broker alone) is reported as led here.
    pub fn partition_view(&self, topic: &crate::replica_manager::Topic, partition: &Partition) -> PartitionView {
        let image = self.image();
        match image.topic_by_id(&topic.id).and_then(|t| t.partitions.get(&partition.index)) {
            Some(state) => PartitionView {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
                replicas: state.replicas.clone(),
                isr: state.isr.clone(),
                offline: state.replicas.iter().copied().filter(|r| !image.is_unfenced(*r) || state.offline_replicas.contains(r)).collect(),
            },
            None => PartitionView {
                leader: self.node_id,
                leader_epoch: partition.leader_epoch(),
                replicas: vec![self.node_id],
                isr: vec![self.node_id],
                offline: Vec::new(),
            },
        }
    }

    /// Whether clients should see a local topic: it is in the applied image with
    /// this id, or it is internal and kept by this broker alone.
    pub fn is_listed(&self, topic: &crate::replica_manager::Topic) -> bool {
        let image = self.image();
        match image.topic_by_name(&topic.name) {
            Some(t) => t.topic_id == topic.id,
            None => topic.internal,
        }
    }

    /// Live brokers (registered, not fenced, or fenced in the last
    /// `FENCED_BROKER_LISTED_FOR` with the same registration) with their endpoint
    /// on `listener` and rack: Metadata's broker list (the fenced ones only with
    /// `with_recently_fenced`). A broker without that listener is left out, as Kafka does.
    pub fn live_brokers(&self, listener: &str, with_recently_fenced: bool) -> Vec<(i32, String, i32, Option<String>)> {
        let recently_fenced = self.recently_fenced.lock();
        let now = Instant::now();
        self.image()
            .brokers
            .values()
            .filter(|b| {
                !b.fenced
                    || with_recently_fenced && recently_fenced.get(&b.node_id).is_some_and(|(epoch, at)| {
                        *epoch == b.broker_epoch
                            && now.saturating_duration_since(*at) < FENCED_BROKER_LISTED_FOR
                    })
            })
            .filter_map(|b| endpoint_on(&b.endpoints, listener).map(|e| (b.node_id, e.host.clone(), i32::from(e.port), b.rack.clone())))
            .collect()
    }

    /// Notes the brokers `next` fences that `previous` had unfenced (see `live_brokers`).
    fn note_fenced_brokers(&self, previous: Option<&MetadataImage>, next: &MetadataImage) {
        let mut recently_fenced = self.recently_fenced.lock();
        let now = Instant::now();
        recently_fenced
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < FENCED_BROKER_LISTED_FOR);
        let Some(previous) = previous else { return };
        for broker in next.brokers.values().filter(|b| b.fenced) {
            let was_unfenced = previous
                .brokers
                .get(&broker.node_id)
                .is_some_and(|b| !b.fenced && b.broker_epoch == broker.broker_epoch);
            if was_unfenced {
                recently_fenced.insert(broker.node_id, (broker.broker_epoch, now));
            }
        }
    }

    /// Waits until the applied image and the replica manager hold `topic_id`.
    pub async fn wait_for_topic(&self, replicas: &ReplicaManager, topic_id: Uuid) -> Option<Arc<crate::replica_manager::Topic>> {
        self.wait_for_image(APPLY_WAIT, |image| image.topic_by_id(&topic_id).is_some()).await;
        replicas.topic_by_id(&topic_id)
    }
}

// Admin changes to topics of the cluster metadata go through the controller and
// are answered once this broker applied them. Topics that are not in it (internal
// ones, kept by this broker alone) change locally. These run on blocking threads
// (the handlers' `spawn_blocking`), where waiting on the runtime is allowed.

/// AlterConfigs / IncrementalAlterConfigs on a TOPIC: `configs` are the new overrides.
pub fn set_topic_configs_blocking(broker: &crate::Broker, name: &str, configs: BTreeMap<String, String>, validate_only: bool) -> Result<(), ApiError> {
    // Validates the configs and that the topic exists.
    broker.replicas.set_topic_configs(name, configs.clone(), true)?;
    if validate_only {
        return Ok(());
    }
    let cluster = &broker.cluster;
    if cluster.image().topic_by_name(name).is_none() {
        return broker.replicas.set_topic_configs(name, configs, false);
    }
    tokio::runtime::Handle::current().block_on(async {
        let request = ControllerRequest::ReplaceConfigs {
            resource_type: runnel_controller::records::ConfigResource::Topic,
            resource_name: name.to_string(),
            configs: configs.clone(),
        };
        cluster.submit(request).await?;
        cluster
            .wait_for_image(APPLY_WAIT, |image| image.topic_configs(name).cloned().unwrap_or_default() == configs)
            .await;
        Ok(())
    })
}

/// DeleteTopics for one topic this broker has.
pub fn delete_topic_blocking(broker: &crate::Broker, topic: &crate::replica_manager::Topic) -> Result<(), ApiError> {
    let cluster = &broker.cluster;
    if cluster.image().topic_by_id(&topic.id).is_none() {
        return broker.replicas.delete_topic(&topic.name);
    }
    tokio::runtime::Handle::current().block_on(async {
        cluster.submit(ControllerRequest::DeleteTopic { name: topic.name.to_string() }).await?;
        cluster.wait_for_image(APPLY_WAIT, |image| image.topic_by_id(&topic.id).is_none()).await;
        Ok(())
    })
}

/// CreatePartitions for one topic: `assignments` are the new partitions' replicas.
pub fn create_partitions_blocking(
    broker: &crate::Broker,
    name: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<(), ApiError> {
    // Checks that the topic exists and that the count grows.
    broker.replicas.create_partitions(name, count, true)?;
    let cluster = &broker.cluster;
    let image = cluster.image();
    if image.topic_by_name(name).is_none() {
        if assignments.as_ref().is_some_and(|a| a.iter().flatten().any(|b| *b != broker.config.node_id)) {
            return Err(ApiError::new(ResponseError::InvalidReplicaAssignment, "Assignment names a broker that does not exist"));
        }
        return broker.replicas.create_partitions(name, count, validate_only);
    }
    if let Some(unknown) = assignments.iter().flatten().flatten().find(|b| !image.brokers.contains_key(b)) {
        return Err(ApiError::new(ResponseError::InvalidReplicaAssignment, format!("Unknown broker id {unknown} in the assignment")));
    }
    if validate_only {
        return Ok(());
    }
    tokio::runtime::Handle::current().block_on(async {
        cluster.submit(ControllerRequest::CreatePartitions { topic: name.to_string(), count, assignments }).await?;
        cluster
            .wait_for_image(APPLY_WAIT, |image| image.topic_by_name(name).is_some_and(|t| t.partitions.len() as i32 >= count))
            .await;
        Ok(())
    })
}
