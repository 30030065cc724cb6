//! ACL bindings and filters (Kafka's `AclBinding` / `AclBindingFilter`), with
//! Kafka's wire codes, and the controller's checks on new bindings (Kafka's
//! `AclControlManager`). Shared by the controller (create/delete decisions), the
//! image (where the applied bindings live) and the broker's authorizer.

use serde::{Deserialize, Serialize};

use crate::records::AccessControlEntryRecord;

/// Kafka's `ResourceType` codes.
pub mod resource_type {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Kafka's `PatternType` codes.
pub mod pattern_type {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's `AclOperation` codes.
pub mod operation {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
    pub const TWO_PHASE_COMMIT: i8 = 15;
}

/// Kafka's `AclPermissionType` codes.
pub mod permission {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The one name a CLUSTER resource has (Kafka's `Resource.CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal resource name that matches every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal that matches every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The host that matches every host.
pub const WILDCARD_HOST: &str = "*";

/// Kafka's bound on the records one ACL operation may write (`MAX_RECORDS_PER_USER_OP`).
pub const MAX_RECORDS_PER_USER_OP: usize = 10_000;

/// One ACL: a resource pattern and an access control entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclBinding {
    pub fn from_record(record: &AccessControlEntryRecord) -> Self {
        AclBinding {
            resource_type: record.resource_type,
            resource_name: record.resource_name.clone(),
            pattern_type: record.pattern_type,
            principal: record.principal.clone(),
            host: record.host.clone(),
            operation: record.operation,
            permission_type: record.permission_type,
        }
    }

    pub fn to_record(&self, id: uuid::Uuid) -> AccessControlEntryRecord {
        AccessControlEntryRecord {
            id,
            resource_type: self.resource_type,
            resource_name: self.resource_name.clone(),
            pattern_type: self.pattern_type,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation,
            permission_type: self.permission_type,
        }
    }
}

/// A filter over bindings (DescribeAcls, DeleteAcls). `None` strings match anything.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AclBindingFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

fn known_resource_type(code: i8) -> bool {
    (resource_type::ANY..=resource_type::USER).contains(&code)
}

fn known_pattern_type(code: i8) -> bool {
    (pattern_type::ANY..=pattern_type::PREFIXED).contains(&code)
}

fn known_operation(code: i8) -> bool {
    (operation::ANY..=operation::TWO_PHASE_COMMIT).contains(&code)
}

fn known_permission(code: i8) -> bool {
    (permission::ANY..=permission::ALLOW).contains(&code)
}

impl AclBindingFilter {
    /// Kafka's `AclBindingFilter.isUnknown`: a code this broker does not know
    /// (or UNKNOWN itself) makes the whole filter invalid.
    pub fn unknown_element(&self) -> Option<&'static str> {
        if !known_resource_type(self.resource_type) {
            Some("resource type")
        } else if !known_pattern_type(self.pattern_type) {
            Some("pattern type")
        } else if !known_operation(self.operation) {
            Some("operation")
        } else if !known_permission(self.permission_type) {
            Some("permission type")
        } else {
            None
        }
    }

    /// Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(binding) && self.matches_entry(binding)
    }

    fn matches_pattern(&self, binding: &AclBinding) -> bool {
        if self.resource_type != resource_type::ANY && self.resource_type != binding.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, pattern_type::ANY | pattern_type::MATCH) && self.pattern_type != binding.pattern_type {
            return false;
        }
        let Some(name) = &self.resource_name else { return true };
        if self.pattern_type == pattern_type::ANY || self.pattern_type == binding.pattern_type {
            return *name == binding.resource_name;
        }
        // MATCH: the bindings that would apply to a resource of this name.
        match binding.pattern_type {
            pattern_type::LITERAL => *name == binding.resource_name || binding.resource_name == WILDCARD_RESOURCE,
            pattern_type::PREFIXED => name.starts_with(&binding.resource_name),
            _ => false,
        }
    }

    fn matches_entry(&self, binding: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && (self.operation == operation::ANY || self.operation == binding.operation)
            && (self.permission_type == permission::ANY || self.permission_type == binding.permission_type)
    }
}

/// Kafka's checks on a binding to create (`AclControlManager.validateNewAcl`
/// and the broker's CreateAcls checks): a message for INVALID_REQUEST, or Ok.
pub fn validate_new_binding(binding: &AclBinding) -> Result<(), String> {
    if !known_resource_type(binding.resource_type) || binding.resource_type == resource_type::ANY {
        return Err(format!("Invalid resourceType {}", binding.resource_type));
    }
    if !matches!(binding.pattern_type, pattern_type::LITERAL | pattern_type::PREFIXED) {
        return Err(format!("Invalid patternType {}", binding.pattern_type));
    }
    if !known_operation(binding.operation) || binding.operation == operation::ANY {
        return Err(format!("Invalid operation {}", binding.operation));
    }
    if !matches!(binding.permission_type, permission::ALLOW | permission::DENY) {
        return Err(format!("Invalid permissionType {}", binding.permission_type));
    }
    if binding.resource_name.is_empty() {
        return Err("Resource name should not be empty".into());
    }
    if binding.resource_type == resource_type::CLUSTER && binding.resource_name != CLUSTER_NAME {
        return Err(format!("The only valid name for the CLUSTER resource is {CLUSTER_NAME}"));
    }
    match binding.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return Err(format!(
                "Could not parse principal from `{}` (no colon is present separating the principal type from the principal name)",
                binding.principal
            ))
        }
    }
    if binding.host.is_empty() {
        return Err("Invalid empty host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(resource_type: i8, name: &str, pattern: i8) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: operation::READ,
            permission_type: permission::ALLOW,
        }
    }

    fn filter(resource_type: i8, name: Option<&str>, pattern: i8) -> AclBindingFilter {
        AclBindingFilter {
            resource_type,
            resource_name: name.map(str::to_string),
            pattern_type: pattern,
            principal: None,
            host: None,
            operation: operation::ANY,
            permission_type: permission::ANY,
        }
    }

    #[test]
    fn validation_refuses_what_kafka_refuses() {
        assert!(validate_new_binding(&binding(resource_type::TOPIC, "t", pattern_type::LITERAL)).is_ok());
        assert!(validate_new_binding(&binding(resource_type::TOPIC, "*", pattern_type::LITERAL)).is_ok());
        assert!(validate_new_binding(&binding(resource_type::ANY, "t", pattern_type::LITERAL)).is_err());
        assert!(validate_new_binding(&binding(resource_type::UNKNOWN, "t", pattern_type::LITERAL)).is_err());
        assert!(validate_new_binding(&binding(resource_type::TOPIC, "t", pattern_type::MATCH)).is_err());
        assert!(validate_new_binding(&binding(resource_type::TOPIC, "t", pattern_type::ANY)).is_err());
        assert!(validate_new_binding(&binding(resource_type::TOPIC, "", pattern_type::LITERAL)).is_err());
        assert!(validate_new_binding(&binding(resource_type::CLUSTER, "other", pattern_type::LITERAL)).is_err());
        assert!(validate_new_binding(&binding(resource_type::CLUSTER, CLUSTER_NAME, pattern_type::LITERAL)).is_ok());
        let mut any_op = binding(resource_type::TOPIC, "t", pattern_type::LITERAL);
        any_op.operation = operation::ANY;
        assert!(validate_new_binding(&any_op).is_err());
        let mut any_permission = binding(resource_type::TOPIC, "t", pattern_type::LITERAL);
        any_permission.permission_type = permission::ANY;
        assert!(validate_new_binding(&any_permission).is_err());
        let mut bad_principal = binding(resource_type::TOPIC, "t", pattern_type::LITERAL);
        bad_principal.principal = "alice".into();
        assert!(validate_new_binding(&bad_principal).unwrap_err().contains("no colon"));
    }

    #[test]
    fn filters_match_as_kafka() {
        let literal = binding(resource_type::TOPIC, "orders", pattern_type::LITERAL);
        let wildcard = binding(resource_type::TOPIC, "*", pattern_type::LITERAL);
        let prefixed = binding(resource_type::TOPIC, "ord", pattern_type::PREFIXED);
        let group = binding(resource_type::GROUP, "orders", pattern_type::LITERAL);
        let any = filter(resource_type::ANY, None, pattern_type::ANY);
        assert!([&literal, &wildcard, &prefixed, &group].iter().all(|b| any.matches(b)));
        let exact = filter(resource_type::TOPIC, Some("orders"), pattern_type::LITERAL);
        assert!(exact.matches(&literal) && !exact.matches(&wildcard) && !exact.matches(&prefixed) && !exact.matches(&group));
        let by_name_any_pattern = filter(resource_type::TOPIC, Some("ord"), pattern_type::ANY);
        assert!(by_name_any_pattern.matches(&prefixed) && !by_name_any_pattern.matches(&literal));
        let matching = filter(resource_type::TOPIC, Some("orders"), pattern_type::MATCH);
        assert!(matching.matches(&literal) && matching.matches(&wildcard) && matching.matches(&prefixed) && !matching.matches(&group));
        let mut deny_only = any.clone();
        deny_only.permission_type = permission::DENY;
        assert!(!deny_only.matches(&literal));
        let mut bob = any.clone();
        bob.principal = Some("User:bob".into());
        assert!(!bob.matches(&literal));
        let unknown = filter(resource_type::UNKNOWN, None, pattern_type::ANY);
        assert!(unknown.unknown_element().is_some());
        assert!(any.unknown_element().is_none());
    }
}
