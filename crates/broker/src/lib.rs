//! Runnel's Kafka-protocol broker.
//!
//! Layers, as in Kafka's broker: [`network`] (framing, connections) →
//! [`apis`] (one file per Kafka API, Kafka's `KafkaApis`) →
//! [`replica_manager`] (topics and partitions) → [`partition`] (one
//! partition: its log, high watermark and group-commit flusher) → the
//! `runnel-storage` crate (logs, segments, indexes). This crate never
//! touches file formats; the storage crate never touches the network.

pub mod add_partitions_to_txn_manager;
pub mod alloc_guard;
pub mod apis;
pub mod cluster;
pub mod config;
pub mod connection_quotas;
pub mod coordinator;
pub mod dynamic_config;
pub mod error;
pub mod fetch_session;
pub mod frame;
pub mod inter_broker;
pub mod log_cleaner;
pub mod network;
pub mod partition;
pub mod producer_state;
pub mod quota;
pub mod replica_fetcher;
pub mod replica_manager;
pub mod security;
pub mod txn_coordinator;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::BrokerConfig;
use replica_manager::ReplicaManager;

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Everything a request handler can reach.
pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub cluster_id: String,
    pub replicas: Arc<ReplicaManager>,
    /// This node's part of the cluster: the metadata quorum member, the broker's
    /// registration, and the committed metadata the replica manager follows.
    pub cluster: Arc<cluster::Cluster>,
    /// Producer ids from the active controller's blocks (unique across the cluster).
    pub producer_ids: Arc<producer_state::ProducerIdManager>,
    pub groups: Arc<coordinator::GroupCoordinator>,
    pub txns: Arc<txn_coordinator::TxnCoordinator>,
    /// Checks a transactional produce's new partitions with a transaction
    /// coordinator on another broker (KIP-890).
    pub add_partitions_to_txn: Arc<add_partitions_to_txn_manager::AddPartitionsToTxnManager>,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: fetch_session::FetchSessionCache,
    /// ACL authorization (`authorizer.class.name`); allows everything when none is configured.
    pub authorizer: Arc<security::authorizer::Authorizer>,
    /// Connection limits (`max.connections`, `max.connections.per.ip`, ...).
    pub connection_quotas: Arc<connection_quotas::ConnectionQuotas>,
    /// Client quota enforcement: each client's byte rates against its quotas.
    pub quotas: quota::ClientQuotaManager,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] runnel_storage::StorageError),
    #[error("group coordinator: {0}")]
    Coordinator(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] config::BrokerConfigError),
    #[error("a startup task failed: {0}")]
    Task(String),
    #[error("listener security: {0}")]
    Security(String),
    #[error("metadata quorum: {0}")]
    Quorum(String),
}

/// A running broker: its addresses and a handle to stop it.
pub struct RunningBroker {
    /// Where the inter-broker listener (the only one, by default) is bound.
    pub local_addr: std::net::SocketAddr,
    /// Every client listener's name and bound address, in `listeners` order.
    pub listener_addrs: Vec<(String, std::net::SocketAddr)>,
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

/// How long a controlled shutdown waits for the leaderships to move away.
const CONTROLLED_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl RunningBroker {
    /// Controlled shutdown (leaderships move to other ISR members first), then
    /// stops accepting connections, flushes and closes every log, and stops the
    /// metadata quorum member.
    pub async fn shutdown(self) {
        self.broker.cluster.controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT).await;
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let replicas = self.broker.replicas.clone();
        let _ = tokio::task::spawn_blocking(move || replicas.shutdown()).await;
        self.broker.cluster.stop().await;
    }
}

/// Binds the client listeners, opens the data directory, loads every log,
/// and starts serving. The listeners are bound first because what is
/// advertised depends on them (port 0 advertises the port actually bound);
/// connections made while the logs load wait in the accept queue.
pub async fn start(config: BrokerConfig) -> Result<RunningBroker, StartError> {
    let clients = config.client_listeners()?;
    // Built before binding, so that a config error never opens a port.
    let securities = clients
        .iter()
        .map(|client| security::ListenerSecurity::new(&config, client).map(Arc::new))
        .collect::<Result<Vec<_>, String>>()
        .map_err(StartError::Security)?;
    let inter_broker = config.inter_broker_listener()?;
    let connection_quotas = Arc::new(connection_quotas::ConnectionQuotas::new(
        &config.connection_limits,
        Some(&inter_broker.listener.name),
        clients.len(),
    )?);
    // How this broker reaches the others (TLS, SASL login); a single node reaches none.
    let broker_connector = if config.controller_quorum_voters.len() > 1 {
        // The controller listener's TLS is checked here too, so that its errors open no port either.
        security::controller_transport::controller_transport(&config).map_err(StartError::Security)?;
        security::connector::BrokerConnector::from_config(&config).map_err(StartError::Security)?
    } else {
        security::connector::BrokerConnector::plaintext()
    };
    tracing::debug!(listener = %inter_broker.listener.name, connector = ?broker_connector, "inter-broker connections");
    let config = resolve_advertised(config, BTreeMap::new()).await?;
    let mut bound = Vec::new();
    for client in &clients {
        let bind_address = client.listener.socket_address();
        let listener = TcpListener::bind(&bind_address)
            .await
            .map_err(|source| StartError::Listen { addr: bind_address.clone(), source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Listen { addr: bind_address.clone(), source })?;
        bound.push((client, listener, local_addr));
    }
    let ports: BTreeMap<String, u16> = bound.iter().map(|(c, _, addr)| (c.listener.name.clone(), addr.port())).collect();
    let config = resolve_advertised(config, ports).await?;
    let inter_broker = config.inter_broker_listener()?.listener.name;
    let local_addr = bound
        .iter()
        .find(|(c, ..)| c.listener.name == inter_broker)
        .map_or(bound[0].2, |(_, _, addr)| *addr);
    let listener_addrs: Vec<(String, std::net::SocketAddr)> =
        bound.iter().map(|(c, _, addr)| (c.listener.name.clone(), *addr)).collect();
    for (client, _, bound_addr) in &bound {
        tracing::info!(
            listener = %client.listener,
            security_protocol = %client.protocol,
            local_addr = %bound_addr,
            advertised = %config.advertised_for(&client.listener.name).map(ToString::to_string).unwrap_or_default(),
            "listening; clients are told to connect to the advertised address"
        );
    }
    let config = Arc::new(config);
    let replicas = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || ReplicaManager::open(config))
            .await
            .map_err(|e| StartError::Task(e.to_string()))??
    };
    replicas.set_broker_connector(broker_connector);
    let local_cluster_id = load_or_create_cluster_id(&replicas)?;
    let cluster = cluster::Cluster::start(&config, &local_cluster_id).await?;
    let cluster_id = cluster.join(&config, &replicas).await?;
    if cluster_id != local_cluster_id {
        tracing::info!(cluster_id, "this data directory joins the cluster's id");
        replicas.meta().put_value("cluster.id", &cluster_id)?;
    }
    let producer_ids = start_producer_ids(&cluster, &replicas).await?;
    replicas.start_retention_task();
    log_cleaner::start(&replicas, config.log_cleaner.clone());
    replicas.start_isr_expiration_task();
    let groups = {
        let (config, replicas, cluster) = (config.clone(), replicas.clone(), cluster.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _runtime = handle.enter();
            coordinator::GroupCoordinator::start(config, replicas, cluster)
        })
            .await
            .map_err(|e| StartError::Coordinator(e.to_string()))?
            .map_err(StartError::Coordinator)?
    };
    let txns = {
        let (config, replicas, groups, cluster) = (config.clone(), replicas.clone(), groups.clone(), cluster.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _runtime = handle.enter();
            txn_coordinator::TxnCoordinator::start(config, replicas, groups, cluster)
        })
        .await
        .map_err(|e| StartError::Coordinator(e.to_string()))?
    };
    let quotas = quota::ClientQuotaManager::new(config.quota_window_num, std::time::Duration::from_secs(config.quota_window_size_seconds));
    let fetch_sessions = fetch_session::FetchSessionCache::new(config.max_incremental_fetch_session_cache_slots);
    let add_partitions_to_txn = add_partitions_to_txn_manager::AddPartitionsToTxnManager::new(&replicas, config.node_id);
    let authorizer = Arc::new(security::authorizer::Authorizer::from_config(&config));
    let broker = Arc::new(Broker {
        config,
        cluster_id,
        replicas,
        cluster,
        producer_ids,
        groups,
        txns,
        add_partitions_to_txn,
        fetch_sessions,
        quotas,
        authorizer,
        connection_quotas,
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let servers: Vec<_> = bound
        .into_iter()
        .zip(securities)
        .map(|((_, listener, _), security)| {
            tokio::spawn(network::serve(broker.clone(), listener, security, shutdown_rx.clone()))
        })
        .collect();
    let server = tokio::spawn(async move {
        for server in servers {
            let _ = server.await;
        }
    });
    tracing::info!(%local_addr, node_id = broker.config.node_id, cluster_id = %broker.cluster_id, "broker started");
    Ok(RunningBroker { local_addr, listener_addrs, broker, shutdown, server })
}

/// How long start-up waits for the first producer-id block when the data directory's
/// local counter issued ids (so the cluster's next id is raised above them before
/// clients are served); after that the broker serves anyway: its own blocks carry
/// the high-water whenever they are requested.
const LEGACY_PRODUCER_IDS_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The producer-id manager. Its first block is requested by the first InitProducerId
/// (start-up commits nothing to the metadata log for it), except for a data directory
/// of an earlier release (producer ids from a local counter): its high-water goes with
/// every block request, and start-up waits for the first block.
async fn start_producer_ids(
    cluster: &Arc<cluster::Cluster>,
    replicas: &ReplicaManager,
) -> Result<Arc<producer_state::ProducerIdManager>, StartError> {
    let high_water = producer_state::legacy_high_water(replicas.meta())?;
    let source = producer_state::ControllerIdBlocks { cluster: Arc::downgrade(cluster), first_id_at_least: high_water };
    let producer_ids = producer_state::ProducerIdManager::new(Arc::new(source));
    if high_water > 0 {
        producer_ids.prefetch();
        let started = std::time::Instant::now();
        while started.elapsed() < LEGACY_PRODUCER_IDS_WAIT {
            if producer_ids.wait_ready(LEGACY_PRODUCER_IDS_WAIT).await {
                tracing::info!(high_water, "producer ids of the local counter are below the cluster's from now on");
                return Ok(producer_ids);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        tracing::warn!(high_water, "no producer id block from the controller yet; serving anyway (the high-water goes with every block request)");
    }
    Ok(producer_ids)
}

/// Decides the advertised address off the async threads: resolving the
/// hostname of a wildcard listener may block on DNS.
async fn resolve_advertised(mut config: BrokerConfig, bound_ports: BTreeMap<String, u16>) -> Result<BrokerConfig, StartError> {
    tokio::task::spawn_blocking(move || config.resolve_advertised(&bound_ports).map(|()| config))
        .await
        .map_err(|e| StartError::Task(e.to_string()))?
        .map_err(StartError::Config)
}

/// The cluster id is made once per data directory and kept, as Kafka's `meta.properties` does.
fn load_or_create_cluster_id(replicas: &ReplicaManager) -> Result<String, runnel_storage::StorageError> {
    if let Some(id) = replicas.meta().get_value("cluster.id")? {
        return Ok(id);
    }
    let id = runnel_controller::new_cluster_id();
    replicas.meta().put_value("cluster.id", &id)?;
    Ok(id)
}
