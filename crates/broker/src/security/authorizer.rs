//! ACL authorization with Kafka's StandardAuthorizer semantics, over the ACLs of
//! the applied cluster metadata image (so every node enforces the same ACLs).
//!
//! A request is allowed when its principal is a super user, or when no DENY
//! binding and at least one ALLOW binding apply to it. A binding applies when its
//! resource pattern matches (LITERAL name, LITERAL `*`, or PREFIXED), its
//! principal is the caller's or `User:*`, its host is the caller's address or `*`,
//! and its operation is the one asked, ALL, or (ALLOW only) one that implies it:
//! READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
//! DESCRIBE_CONFIGS. A resource no binding names at all is allowed only with
//! `allow.everyone.if.no.acl.found`. Without `authorizer.class.name` everything
//! is allowed.

use std::net::IpAddr;

use runnel_controller::acl::{operation, pattern_type, permission, resource_type, WILDCARD_HOST, WILDCARD_PRINCIPAL, WILDCARD_RESOURCE};
use runnel_controller::records::AccessControlEntryRecord;
use runnel_controller::MetadataImage;

use crate::config::BrokerConfig;

#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    enabled: bool,
    super_users: Vec<String>,
    allow_everyone_if_no_acl_found: bool,
}

/// Who asks: the connection's principal and peer address.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: IpAddr,
}

impl Authorizer {
    pub fn from_config(config: &BrokerConfig) -> Self {
        Authorizer {
            enabled: !config.authorizer_class_name.is_empty(),
            super_users: config.super_users.clone(),
            allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
        }
    }

    /// Whether an authorizer is configured (else everything is allowed and the ACL APIs are disabled).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.iter().any(|u| u == principal)
    }

    /// Kafka's `Authorizer.authorize` for one action.
    pub fn authorize(&self, image: &MetadataImage, who: Requester<'_>, op: i8, rtype: i8, name: &str) -> bool {
        if !self.enabled || self.is_super_user(who.principal) {
            return true;
        }
        let host = who.host.to_string();
        let mut resource_has_acls = false;
        let mut allowed = false;
        for acl in image.acls.values().filter(|acl| pattern_matches(acl, rtype, name)) {
            resource_has_acls = true;
            if !(acl.principal == who.principal || acl.principal == WILDCARD_PRINCIPAL) {
                continue;
            }
            if !(acl.host == host || acl.host == WILDCARD_HOST) {
                continue;
            }
            match acl.permission_type {
                permission::DENY if acl.operation == op || acl.operation == operation::ALL => return false,
                permission::ALLOW if allow_covers(acl.operation, op) => allowed = true,
                _ => {}
            }
        }
        allowed || (!resource_has_acls && self.allow_everyone_if_no_acl_found)
    }

    /// Kafka's `Authorizer.authorizeByResourceType`: whether the principal may do
    /// `op` on at least one resource of the type (e.g. WRITE on some topic makes
    /// an idempotent producer legitimate). An ALLOW counts unless a DENY on the
    /// same pattern, or on every resource of the type, cancels it.
    pub fn authorize_any(&self, image: &MetadataImage, who: Requester<'_>, op: i8, rtype: i8) -> bool {
        if !self.enabled || self.is_super_user(who.principal) {
            return true;
        }
        let host = who.host.to_string();
        let applies = |acl: &&AccessControlEntryRecord| {
            acl.resource_type == rtype
                && (acl.principal == who.principal || acl.principal == WILDCARD_PRINCIPAL)
                && (acl.host == host || acl.host == WILDCARD_HOST)
                && (acl.operation == op || acl.operation == operation::ALL)
        };
        let denies: Vec<&AccessControlEntryRecord> =
            image.acls.values().filter(applies).filter(|acl| acl.permission_type == permission::DENY).collect();
        let denies_everything = denies.iter().any(|d| {
            (d.pattern_type == pattern_type::LITERAL && d.resource_name == WILDCARD_RESOURCE)
                || (d.pattern_type == pattern_type::PREFIXED && d.resource_name.is_empty())
        });
        if denies_everything {
            return false;
        }
        let any_allow = image.acls.values().filter(applies).filter(|acl| acl.permission_type == permission::ALLOW).any(|allow| {
            !denies.iter().any(|deny| {
                // A DENY cancels an ALLOW it covers: same pattern, or a prefix of a pattern.
                (deny.pattern_type == allow.pattern_type && deny.resource_name == allow.resource_name)
                    || (deny.pattern_type == pattern_type::PREFIXED && allow.resource_name.starts_with(&deny.resource_name))
            })
        });
        if any_allow {
            return true;
        }
        self.allow_everyone_if_no_acl_found && !image.acls.values().any(|acl| acl.resource_type == rtype)
    }

    /// KIP-430: the bitfield of `supported` operations the requester may do on the resource.
    pub fn authorized_operations(&self, image: &MetadataImage, who: Requester<'_>, rtype: i8, name: &str, supported: &[i8]) -> i32 {
        supported.iter().filter(|op| self.authorize(image, who, **op, rtype, name)).fold(0, |bits, op| bits | (1 << op))
    }
}

fn pattern_matches(acl: &AccessControlEntryRecord, rtype: i8, name: &str) -> bool {
    acl.resource_type == rtype
        && match acl.pattern_type {
            pattern_type::LITERAL => acl.resource_name == name || acl.resource_name == WILDCARD_RESOURCE,
            pattern_type::PREFIXED => name.starts_with(acl.resource_name.as_str()),
            _ => false,
        }
}

/// Whether an ALLOW binding for `granted` allows `asked` (Kafka's implied operations).
fn allow_covers(granted: i8, asked: i8) -> bool {
    granted == asked
        || granted == operation::ALL
        || (asked == operation::DESCRIBE && matches!(granted, operation::READ | operation::WRITE | operation::DELETE | operation::ALTER))
        || (asked == operation::DESCRIBE_CONFIGS && granted == operation::ALTER_CONFIGS)
}

/// The operations each resource type supports, for KIP-430 bitfields (Kafka's `AclEntry.supportedOperations`).
pub const TOPIC_OPERATIONS: &[i8] = &[
    operation::READ,
    operation::WRITE,
    operation::CREATE,
    operation::DELETE,
    operation::ALTER,
    operation::DESCRIBE,
    operation::DESCRIBE_CONFIGS,
    operation::ALTER_CONFIGS,
];
pub const GROUP_OPERATIONS: &[i8] = &[operation::READ, operation::DESCRIBE, operation::DELETE, operation::DESCRIBE_CONFIGS, operation::ALTER_CONFIGS];
pub const CLUSTER_OPERATIONS: &[i8] = &[
    operation::CREATE,
    operation::CLUSTER_ACTION,
    operation::DESCRIBE_CONFIGS,
    operation::ALTER_CONFIGS,
    operation::IDEMPOTENT_WRITE,
    operation::ALTER,
    operation::DESCRIBE,
];

/// The resource types ACLs are checked on (re-exported for the API handlers).
pub use resource_type::{CLUSTER, GROUP, TOPIC, TRANSACTIONAL_ID};

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn image(acls: &[(i8, &str, i8, &str, &str, i8, i8)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (resource_type, name, pattern_type, principal, host, operation, permission_type) in acls {
            let id = Uuid::new_v4();
            image.acls.insert(
                id,
                AccessControlEntryRecord {
                    id,
                    resource_type: *resource_type,
                    resource_name: name.to_string(),
                    pattern_type: *pattern_type,
                    principal: principal.to_string(),
                    host: host.to_string(),
                    operation: *operation,
                    permission_type: *permission_type,
                },
            );
        }
        image
    }

    fn authorizer(super_users: &[&str], allow_everyone: bool) -> Authorizer {
        Authorizer { enabled: true, super_users: super_users.iter().map(|s| s.to_string()).collect(), allow_everyone_if_no_acl_found: allow_everyone }
    }

    fn alice() -> Requester<'static> {
        Requester { principal: "User:alice", host: "10.0.0.1".parse().unwrap() }
    }

    const LIT: i8 = pattern_type::LITERAL;
    const PRE: i8 = pattern_type::PREFIXED;
    const ALLOW: i8 = permission::ALLOW;
    const DENY: i8 = permission::DENY;

    #[test]
    fn literal_prefixed_and_wildcard_patterns() {
        let a = authorizer(&[], false);
        let img = image(&[
            (TOPIC, "orders", LIT, "User:alice", "*", operation::READ, ALLOW),
            (TOPIC, "logs-", PRE, "User:alice", "*", operation::WRITE, ALLOW),
            (GROUP, "*", LIT, "User:alice", "*", operation::READ, ALLOW),
        ]);
        assert!(a.authorize(&img, alice(), operation::READ, TOPIC, "orders"));
        assert!(!a.authorize(&img, alice(), operation::READ, TOPIC, "orders2"));
        assert!(!a.authorize(&img, alice(), operation::WRITE, TOPIC, "orders"));
        assert!(a.authorize(&img, alice(), operation::WRITE, TOPIC, "logs-app"));
        assert!(!a.authorize(&img, alice(), operation::WRITE, TOPIC, "log"));
        assert!(a.authorize(&img, alice(), operation::READ, GROUP, "any-group"));
        let bob = Requester { principal: "User:bob", host: "10.0.0.1".parse().unwrap() };
        assert!(!a.authorize(&img, bob, operation::READ, TOPIC, "orders"));
    }

    #[test]
    fn deny_wins_and_implied_operations_are_for_allow_only() {
        let a = authorizer(&[], false);
        let img = image(&[
            (TOPIC, "*", LIT, "User:*", "*", operation::ALL, ALLOW),
            (TOPIC, "secret", LIT, "User:alice", "*", operation::READ, DENY),
            (TOPIC, "cfg", LIT, "User:bob", "*", operation::ALTER_CONFIGS, ALLOW),
        ]);
        assert!(a.authorize(&img, alice(), operation::WRITE, TOPIC, "public"));
        assert!(!a.authorize(&img, alice(), operation::READ, TOPIC, "secret"));
        // DENY READ does not deny DESCRIBE (the wildcard ALL allows it).
        assert!(a.authorize(&img, alice(), operation::DESCRIBE, TOPIC, "secret"));
        let only_read = image(&[(TOPIC, "t", LIT, "User:alice", "*", operation::READ, ALLOW)]);
        assert!(a.authorize(&only_read, alice(), operation::DESCRIBE, TOPIC, "t"));
        assert!(!a.authorize(&only_read, alice(), operation::DESCRIBE_CONFIGS, TOPIC, "t"));
        let bob = Requester { principal: "User:bob", host: "10.0.0.1".parse().unwrap() };
        assert!(a.authorize(&img, bob, operation::DESCRIBE_CONFIGS, TOPIC, "cfg"));
    }

    #[test]
    fn hosts_super_users_and_the_no_acl_rule() {
        let img = image(&[(TOPIC, "t", LIT, "User:alice", "10.0.0.2", operation::READ, ALLOW)]);
        let strict = authorizer(&["User:admin"], false);
        assert!(!strict.authorize(&img, alice(), operation::READ, TOPIC, "t"), "another host's ACL");
        let from_2 = Requester { principal: "User:alice", host: "10.0.0.2".parse().unwrap() };
        assert!(strict.authorize(&img, from_2, operation::READ, TOPIC, "t"));
        let admin = Requester { principal: "User:admin", host: "10.0.0.9".parse().unwrap() };
        assert!(strict.authorize(&img, admin, operation::DELETE, CLUSTER, "kafka-cluster"));
        assert!(!strict.authorize(&img, alice(), operation::READ, TOPIC, "no-acl"));
        let open = authorizer(&[], true);
        assert!(open.authorize(&img, alice(), operation::READ, TOPIC, "no-acl"));
        assert!(!open.authorize(&img, alice(), operation::READ, TOPIC, "t"), "the resource has ACLs, none for alice here");
        assert!(Authorizer::default().authorize(&img, alice(), operation::READ, TOPIC, "t"), "no authorizer: all allowed");
    }

    #[test]
    fn by_resource_type_and_operation_bits() {
        let a = authorizer(&[], false);
        let img = image(&[
            (TOPIC, "a", LIT, "User:alice", "*", operation::WRITE, ALLOW),
            (TOPIC, "b-", PRE, "User:alice", "*", operation::WRITE, ALLOW),
            (TOPIC, "b-", PRE, "User:alice", "*", operation::WRITE, DENY),
        ]);
        assert!(a.authorize_any(&img, alice(), operation::WRITE, TOPIC));
        assert!(!a.authorize_any(&img, alice(), operation::READ, TOPIC));
        let denied = image(&[
            (TOPIC, "a", LIT, "User:alice", "*", operation::WRITE, ALLOW),
            (TOPIC, "*", LIT, "User:alice", "*", operation::WRITE, DENY),
        ]);
        assert!(!a.authorize_any(&denied, alice(), operation::WRITE, TOPIC));
        let bits = a.authorized_operations(&img, alice(), TOPIC, "a", TOPIC_OPERATIONS);
        assert_eq!(bits, (1 << operation::WRITE) | (1 << operation::DESCRIBE));
    }
}
