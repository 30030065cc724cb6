//! Listener security: what each listener requires of its connections (its
//! security protocol; TLS and SASL settings as they are added) and who a
//! connection is (its principal).

pub mod authorizer;
pub mod connector;
pub mod controller_transport;
pub mod keystore;
pub mod oauthbearer;
pub mod principal_mapping;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::sync::Arc;

use crate::config::{BrokerConfig, ClientListener, SecurityProtocol};

/// Kafka's principal of an unauthenticated connection (PLAINTEXT, or SSL without a client certificate).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// One client listener's settings, shared by its connections.
pub struct ListenerSecurity {
    /// The listener name (`PLAINTEXT`, `SASL_SSL`, `CLIENT`, ...): Metadata and
    /// FindCoordinator answer the brokers' addresses on this listener.
    pub name: Arc<str>,
    pub protocol: SecurityProtocol,
    /// SSL and SASL_SSL listeners: the TLS acceptor (rustls), reloaded when its files change.
    pub tls: Option<tls::ReloadingAcceptor>,
    /// SASL_PLAINTEXT and SASL_SSL listeners: mechanisms and users.
    pub sasl: Option<Arc<sasl::SaslSettings>>,
    /// SSL listeners: `ssl.principal.mapping.rules`, from a client
    /// certificate's subject DN to the connection's principal.
    pub principal_mapper: Option<principal_mapping::PrincipalMapper>,
}

impl std::fmt::Debug for ListenerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSecurity").field("name", &self.name).field("protocol", &self.protocol).field("tls", &self.tls.is_some()).field("sasl", &self.sasl).finish()
    }
}

impl ListenerSecurity {
    /// Builds a listener's security from its settings; errors say which setting is wrong.
    pub fn new(config: &BrokerConfig, client: &ClientListener) -> Result<ListenerSecurity, String> {
        let name = client.listener.name.as_str();
        let tls = if client.protocol.uses_tls() {
            Some(tls::ReloadingAcceptor::new(config, name)?)
        } else {
            None
        };
        let sasl = if client.protocol.uses_sasl() { Some(Arc::new(sasl::SaslSettings::new(config, name)?)) } else { None };
        // Only an SSL listener's principal comes from the certificate; on SASL_SSL it is the SASL identity.
        let principal_mapper = if client.protocol == SecurityProtocol::Ssl {
            let rules = config.listener_setting(name, "ssl.principal.mapping.rules").unwrap_or("DEFAULT");
            Some(principal_mapping::PrincipalMapper::new(rules).map_err(|e| format!("listener {name}: ssl.principal.mapping.rules: {e}"))?)
        } else {
            None
        };
        Ok(ListenerSecurity { name: Arc::from(name), protocol: client.protocol, tls, sasl, principal_mapper })
    }
}
