//! The metadata quorum's connections (the controller listener, Kafka's
//! `controller.listener.names`) secured as `listener.security.protocol.map`
//! says: PLAINTEXT, or SSL with mutual TLS. Controllers speak Runnel's own
//! Raft protocol, which has no authorization of its own, so on SSL every
//! connection must present a certificate the listener's trust store vouches
//! for, whatever `ssl.client.auth` says; SASL is refused at start.

use std::sync::Arc;

use futures::future::BoxFuture;
use runnel_controller::raft::network::{PeerStream, PeerTransport, PlainTransport};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::config::{BrokerConfig, SecurityProtocol};
use crate::security::tls::{ReloadingAcceptor, ReloadingConnector};

/// Mutual TLS between controllers, with the controller listener's `ssl.*` settings.
struct TlsTransport {
    acceptor: ReloadingAcceptor,
    connector: ReloadingConnector,
}

impl PeerTransport for TlsTransport {
    fn connect(&self, stream: TcpStream, addr: String) -> BoxFuture<'static, std::io::Result<PeerStream>> {
        let connector = self.connector.connector();
        Box::pin(async move {
            let host = host_of(&addr);
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::other(format!("{host:?} is not a host name for TLS: {e}")))?;
            let stream = connector.connect(name, stream).await.map_err(|e| std::io::Error::other(format!("TLS handshake with controller {addr}: {e}")))?;
            Ok(Box::new(stream) as PeerStream)
        })
    }

    fn accept(&self, stream: TcpStream) -> BoxFuture<'static, std::io::Result<PeerStream>> {
        let acceptor = self.acceptor.acceptor();
        Box::pin(async move {
            let stream = acceptor.accept(stream).await.map_err(|e| std::io::Error::other(format!("TLS handshake: {e}")))?;
            Ok(Box::new(stream) as PeerStream)
        })
    }
}

/// The host of `host:port` (an IPv6 address without its brackets).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// The transport of the controller listener named in `controller.listener.names`
/// (plain TCP when `listeners` does not list it: the voter address is bound as is).
pub fn controller_transport(config: &BrokerConfig) -> Result<Arc<dyn PeerTransport>, String> {
    let Some((name, protocol)) = config.controller_listener_protocol()? else {
        return Ok(Arc::new(PlainTransport));
    };
    match protocol {
        SecurityProtocol::Plaintext => Ok(Arc::new(PlainTransport)),
        SecurityProtocol::Ssl => {
            if config.listener_setting(&name, "ssl.client.auth").is_some_and(|v| !v.eq_ignore_ascii_case("required")) {
                tracing::info!(listener = %name, "the controller listener asks every controller for a client certificate, whatever ssl.client.auth says");
            }
            Ok(Arc::new(TlsTransport {
                acceptor: ReloadingAcceptor::requiring_client_certificates(config, &name)?,
                connector: ReloadingConnector::new(config, &name)?,
            }))
        }
        other => Err(format!(
            "controller listener {name}: {} is not supported on the metadata quorum's connections; map it to SSL (mutual TLS) or PLAINTEXT in listener.security.protocol.map",
            other.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_voter_addresses() {
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("broker-1.example.com:9093"), "broker-1.example.com");
        assert_eq!(host_of("[::1]:9093"), "::1");
    }

    #[test]
    fn sasl_on_the_controller_listener_is_refused_and_ssl_needs_its_stores() {
        let mut c = BrokerConfig::default();
        c.set("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093").unwrap();
        c.set("controller.listener.names", "CONTROLLER").unwrap();
        assert!(controller_transport(&c).is_ok(), "PLAINTEXT by Kafka's default map (CONTROLLER is not a protocol name)");
        c.set("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_SSL").unwrap();
        let err = controller_transport(&c).err().unwrap();
        assert!(err.contains("SASL_SSL is not supported"), "{err}");
        c.set("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL").unwrap();
        let err = controller_transport(&c).err().unwrap();
        assert!(err.contains("key store"), "{err}");
    }
}
