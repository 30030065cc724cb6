//! The transport between controllers: one TCP connection per peer stream, each
//! request a frame (length u32 BE + JSON), answered in order on the same
//! connection. Also carries `submit` requests forwarded to the active controller.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{NodeId, Raft, TypeConfig};
use crate::controller::{ControllerRequest, ControllerResponse};
use crate::{QuorumInfo, SubmitError};

/// Bounds a frame before its bytes are read (snapshot chunks are the largest).
const MAX_FRAME_BYTES: usize = 64 << 20;

#[derive(Serialize, Deserialize)]
pub enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Submit(ControllerRequest),
    /// DescribeQuorum, answered by the leader (the only node that knows its followers' progress).
    DescribeQuorum,
    /// Whether the peer's metadata log holds anything: asked by a node with an empty log
    /// before it bootstraps the quorum (see `Quorum::start`).
    HasMetadataLog,
    /// Opens a broker's liveness link to the active controller: answered once, then
    /// held open. The broker sends `ReleaseLivenessLink` before closing it on
    /// purpose; a link that closes without it lost its broker (see
    /// `Controller::liveness_link_lost`).
    HoldLivenessLink {
        node_id: i32,
        broker_epoch: i64,
    },
    ReleaseLivenessLink,
}

#[derive(Serialize, Deserialize)]
pub enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Submit(Result<ControllerResponse, SubmitError>),
    DescribeQuorum(Result<QuorumInfo, SubmitError>),
    HasMetadataLog(bool),
    LivenessLinkHeld,
}

/// A byte stream between controllers: plain TCP, or what a [`PeerTransport`] made of it.
pub trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> PeerIo for T {}
pub type PeerStream = Box<dyn PeerIo>;

/// How connections between controllers are secured. The quorum knows nothing
/// of TLS: the broker gives a transport made from the controller listener's
/// settings (`listener.security.protocol.map`, `ssl.*`); plain TCP otherwise.
pub trait PeerTransport: Send + Sync + 'static {
    /// The connecting side, on a connection just made to `addr` (host:port).
    fn connect(&self, stream: TcpStream, addr: String) -> BoxFuture<'static, std::io::Result<PeerStream>>;
    /// The accepting side, on a connection just accepted.
    fn accept(&self, stream: TcpStream) -> BoxFuture<'static, std::io::Result<PeerStream>>;
}

/// Plain TCP.
pub struct PlainTransport;

impl PeerTransport for PlainTransport {
    fn connect(&self, stream: TcpStream, _addr: String) -> BoxFuture<'static, std::io::Result<PeerStream>> {
        Box::pin(async move { Ok(Box::new(stream) as PeerStream) })
    }

    fn accept(&self, stream: TcpStream) -> BoxFuture<'static, std::io::Result<PeerStream>> {
        Box::pin(async move { Ok(Box::new(stream) as PeerStream) })
    }
}

/// Connects to a peer and secures the connection with `transport`.
pub async fn connect(transport: &dyn PeerTransport, addr: &str) -> std::io::Result<PeerStream> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    transport.connect(stream, addr.to_string()).await
}

/// How long an accepted connection may take to secure itself (a TLS handshake).
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn write_frame<T: Serialize, S: AsyncWrite + Unpin + ?Sized>(stream: &mut S, message: &T) -> std::io::Result<()> {
    let payload = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    if payload.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!("frame of {} bytes exceeds {MAX_FRAME_BYTES}", payload.len())));
    }
    let mut bytes = Vec::with_capacity(4 + payload.len());
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&payload);
    stream.write_all(&bytes).await?;
    // TLS streams buffer what is written until flushed.
    stream.flush().await
}

pub async fn read_frame<T: serde::de::DeserializeOwned, S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> std::io::Result<T> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!("frame of {len} bytes exceeds {MAX_FRAME_BYTES}")));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    serde_json::from_slice(&payload).map_err(|e| std::io::Error::other(format!("undecodable frame: {e}")))
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect to {addr}: {source}")]
    Unreachable { addr: String, source: std::io::Error },
    #[error("talking to {addr}: {source}")]
    Network { addr: String, source: std::io::Error },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

/// A client connection to one peer; reconnects on the next call after any failure.
pub struct PeerConnection {
    addr: String,
    transport: Arc<dyn PeerTransport>,
    stream: Option<PeerStream>,
}

impl PeerConnection {
    pub fn new(addr: String, transport: Arc<dyn PeerTransport>) -> Self {
        PeerConnection { addr, transport, stream: None }
    }

    pub async fn call(&mut self, request: &PeerRequest, timeout: Duration) -> Result<PeerResponse, CallError> {
        let addr = self.addr.clone();
        let result = tokio::time::timeout(timeout, async {
            if self.stream.is_none() {
                let stream = connect(self.transport.as_ref(), &addr)
                    .await
                    .map_err(|source| CallError::Unreachable { addr: addr.clone(), source })?;
                self.stream = Some(stream);
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(CallError::Network { addr: addr.clone(), source: std::io::Error::other("not connected") });
            };
            write_frame(stream, request).await.map_err(|source| CallError::Network { addr: addr.clone(), source })?;
            read_frame(stream).await.map_err(|source| CallError::Network { addr: addr.clone(), source })
        })
        .await
        .unwrap_or_else(|_| Err(CallError::Timeout { addr: addr.clone(), timeout }));
        if result.is_err() {
            // The stream may hold half a frame: never reuse it.
            self.stream = None;
        }
        result
    }
}

pub struct NetworkFactory {
    pub transport: Arc<dyn PeerTransport>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient { target, connection: PeerConnection::new(node.addr.clone(), self.transport.clone()) }
    }
}

pub struct PeerClient {
    target: NodeId,
    connection: PeerConnection,
}

impl PeerClient {
    async fn rpc<E: std::error::Error>(
        &mut self,
        request: PeerRequest,
        option: &RPCOption,
    ) -> Result<PeerResponse, RPCError<NodeId, BasicNode, E>> {
        self.connection.call(&request, option.hard_ttl()).await.map_err(|e| match &e {
            CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        })
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        let e = std::io::Error::other(format!("node {} answered with the wrong response type", self.target));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.rpc(PeerRequest::AppendEntries(rpc), &option).await? {
            PeerResponse::AppendEntries(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.rpc(PeerRequest::InstallSnapshot(rpc), &option).await? {
            PeerResponse::InstallSnapshot(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.rpc(PeerRequest::Vote(rpc), &option).await? {
            PeerResponse::Vote(result) => result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(self.unexpected()),
        }
    }
}

pub type SubmitFuture = Pin<Box<dyn Future<Output = Result<ControllerResponse, SubmitError>> + Send>>;
/// Runs a forwarded request on this node (it answers NotLeader when it is not the active controller).
pub type SubmitHandler = Arc<dyn Fn(ControllerRequest) -> SubmitFuture + Send + Sync>;

/// Describes the quorum from this node (NotLeader when it is not the leader).
pub type DescribeQuorumHandler = Arc<dyn Fn() -> Result<QuorumInfo, SubmitError> + Send + Sync>;

/// Accepts peer connections until the task is aborted; aborting it also ends every
/// connection (they live in its JoinSet), so a stopped node stops answering at once.
/// Called when a broker's liveness link (node id, broker epoch) closes without a release.
pub type LivenessLostHandler = Arc<dyn Fn(i32, i64) + Send + Sync>;

/// The handlers of the requests that are not Raft's own.
#[derive(Clone)]
pub struct Handlers {
    pub submit: SubmitHandler,
    pub describe: DescribeQuorumHandler,
    pub liveness_lost: LivenessLostHandler,
}

pub async fn serve(listener: TcpListener, transport: Arc<dyn PeerTransport>, raft: Raft, handlers: Handlers) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let secured = transport.accept(stream);
                    let (raft, handlers) = (raft.clone(), handlers.clone());
                    connections.spawn(async move {
                        match tokio::time::timeout(ACCEPT_TIMEOUT, secured).await {
                            Ok(Ok(stream)) => serve_connection(stream, raft, handlers, peer).await,
                            // A peer that is not a controller of this cluster (no certificate, the wrong CA, not TLS).
                            Ok(Err(e)) => tracing::warn!(%peer, error = %e, "controller listener: connection refused"),
                            Err(_) => tracing::warn!(%peer, "controller listener: connection refused: no TLS handshake in time"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "controller listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(
    mut stream: PeerStream,
    raft: Raft,
    handlers: Handlers,
    peer: std::net::SocketAddr,
) {
    loop {
        let request: PeerRequest = match read_frame(&mut stream).await {
            Ok(request) => request,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%peer, error = %e, "controller connection closed");
                }
                return;
            }
        };
        let response = match request {
            PeerRequest::AppendEntries(rpc) => PeerResponse::AppendEntries(raft.append_entries(rpc).await),
            PeerRequest::Vote(rpc) => PeerResponse::Vote(raft.vote(rpc).await),
            PeerRequest::InstallSnapshot(rpc) => PeerResponse::InstallSnapshot(raft.install_snapshot(rpc).await),
            PeerRequest::Submit(request) => PeerResponse::Submit((handlers.submit)(request).await),
            PeerRequest::DescribeQuorum => PeerResponse::DescribeQuorum((handlers.describe)()),
            // A log id (an entry, or a snapshot's last one) exists once the quorum was bootstrapped here.
            PeerRequest::HasMetadataLog => PeerResponse::HasMetadataLog(raft.metrics().borrow().last_log_index.is_some()),
            PeerRequest::HoldLivenessLink { node_id, broker_epoch } => {
                if write_frame(&mut stream, &PeerResponse::LivenessLinkHeld).await.is_err() {
                    return;
                }
                // Nothing more comes on a held link but its release; an end without one
                // (EOF, reset, an undecodable frame) means the broker is gone.
                match read_frame::<PeerRequest, _>(&mut stream).await {
                    Ok(PeerRequest::ReleaseLivenessLink) => {}
                    Ok(_) | Err(_) => {
                        tracing::debug!(%peer, node_id, broker_epoch, "broker liveness link closed without a release");
                        (handlers.liveness_lost)(node_id, broker_epoch);
                    }
                }
                return;
            }
            PeerRequest::ReleaseLivenessLink => return,
        };
        if let Err(e) = write_frame(&mut stream, &response).await {
            tracing::debug!(%peer, error = %e, "controller connection: write failed");
            return;
        }
    }
}
