//! `runnel acl create|list|delete`: ACL bindings through CreateAcls,
//! DescribeAcls and DeleteAcls, in the spirit of Kafka's `kafka-acls.sh`
//! (`--allow-principal User:alice --operation read --topic t`). The codes are
//! Kafka's, so any broker with an authorizer answers.

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::wire::{self, Connection};
use crate::ClientArgs;

// Kafka's codes (ResourceType, PatternType, AclOperation, AclPermissionType).
const ANY: i8 = 1;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_GROUP: i8 = 3;
const RESOURCE_CLUSTER: i8 = 4;
const RESOURCE_TRANSACTIONAL_ID: i8 = 5;
const PATTERN_MATCH: i8 = 2;
const PATTERN_LITERAL: i8 = 3;
const PATTERN_PREFIXED: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
const CLUSTER_NAME: &str = "kafka-cluster";

const OPERATIONS: &[(&str, i8)] = &[
    ("any", 1),
    ("all", 2),
    ("read", 3),
    ("write", 4),
    ("create", 5),
    ("delete", 6),
    ("alter", 7),
    ("describe", 8),
    ("cluster-action", 9),
    ("describe-configs", 10),
    ("alter-configs", 11),
    ("idempotent-write", 12),
    ("create-tokens", 13),
    ("describe-tokens", 14),
    ("two-phase-commit", 15),
];

#[derive(clap::Args, Debug, Clone)]
pub struct ResourceArgs {
    /// A topic (`*`: every topic).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group (`*`: every group).
    #[arg(long)]
    group: Option<String>,
    /// The cluster itself.
    #[arg(long)]
    cluster: bool,
    /// A transactional id (`*`: every one).
    #[arg(long)]
    transactional_id: Option<String>,
    /// literal or prefixed (create); any, match, literal or prefixed (list, delete; default: any).
    #[arg(long)]
    resource_pattern_type: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum AclCommand {
    /// Add ALLOW / DENY bindings: every principal × operation × host on the resource.
    Create {
        #[command(flatten)]
        resource: ResourceArgs,
        /// A principal to allow, e.g. User:alice (repeatable; User:* is everyone).
        #[arg(long)]
        allow_principal: Vec<String>,
        /// A principal to deny (repeatable); a DENY wins over any ALLOW.
        #[arg(long)]
        deny_principal: Vec<String>,
        /// read, write, create, delete, alter, describe, cluster-action, describe-configs, alter-configs, idempotent-write, all (repeatable).
        #[arg(long, required = true)]
        operation: Vec<String>,
        /// The client address the binding applies to (`*`: any).
        #[arg(long, default_value = "*")]
        host: String,
    },
    /// List the bindings that match (every binding without a resource).
    List {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only this principal's bindings.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Delete every binding that matches the filter.
    Delete {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only this principal's bindings.
        #[arg(long)]
        principal: Option<String>,
        /// Only bindings of this operation.
        #[arg(long)]
        operation: Option<String>,
    },
}

/// The resource the arguments name: (type, name); None for "any resource".
fn resource(args: &ResourceArgs) -> Result<Option<(i8, String)>> {
    let named: Vec<(i8, String)> = [
        args.topic.clone().map(|t| (RESOURCE_TOPIC, t)),
        args.group.clone().map(|g| (RESOURCE_GROUP, g)),
        args.cluster.then(|| (RESOURCE_CLUSTER, CLUSTER_NAME.to_string())),
        args.transactional_id.clone().map(|t| (RESOURCE_TRANSACTIONAL_ID, t)),
    ]
    .into_iter()
    .flatten()
    .collect();
    match named.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        _ => bail!("name one resource: --topic, --group, --cluster or --transactional-id"),
    }
}

fn pattern_type(name: Option<&str>, default: i8) -> Result<i8> {
    match name.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("literal") => Ok(PATTERN_LITERAL),
        Some("prefixed") => Ok(PATTERN_PREFIXED),
        Some("any") => Ok(ANY),
        Some("match") => Ok(PATTERN_MATCH),
        Some(other) => bail!("unknown resource pattern type {other:?} (literal, prefixed, any, match)"),
    }
}

fn operation_code(name: &str) -> Result<i8> {
    let wanted = name.to_ascii_lowercase().replace('_', "-");
    match OPERATIONS.iter().find(|(n, _)| *n == wanted || n.replace('-', "") == wanted) {
        Some((_, code)) => Ok(*code),
        None => bail!("unknown operation {name:?}"),
    }
}

fn operation_name(code: i8) -> String {
    OPERATIONS.iter().find(|(_, c)| *c == code).map_or_else(|| format!("unknown({code})"), |(n, _)| n.to_string())
}

fn resource_type_name(code: i8) -> String {
    match code {
        RESOURCE_TOPIC => "topic".into(),
        RESOURCE_GROUP => "group".into(),
        RESOURCE_CLUSTER => "cluster".into(),
        RESOURCE_TRANSACTIONAL_ID => "transactional-id".into(),
        6 => "delegation-token".into(),
        7 => "user".into(),
        other => format!("unknown({other})"),
    }
}

fn pattern_name(code: i8) -> &'static str {
    match code {
        PATTERN_LITERAL => "literal",
        PATTERN_PREFIXED => "prefixed",
        _ => "unknown",
    }
}

fn permission_name(code: i8) -> &'static str {
    match code {
        ALLOW => "allow",
        DENY => "deny",
        _ => "unknown",
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub async fn run(args: &ClientArgs, cmd: AclCommand) -> Result<()> {
    let mut connection = Connection::open(&args.brokers).await?;
    match cmd {
        AclCommand::Create { resource: resource_args, allow_principal, deny_principal, operation, host } => {
            let Some((resource_type, name)) = resource(&resource_args)? else {
                bail!("name the resource: --topic, --group, --cluster or --transactional-id");
            };
            let pattern = pattern_type(resource_args.resource_pattern_type.as_deref(), PATTERN_LITERAL)?;
            if allow_principal.is_empty() && deny_principal.is_empty() {
                bail!("give --allow-principal or --deny-principal");
            }
            let operations = operation.iter().map(|o| operation_code(o)).collect::<Result<Vec<i8>>>()?;
            let mut creations = Vec::new();
            for (principals, permission) in [(&allow_principal, ALLOW), (&deny_principal, DENY)] {
                for principal in principals {
                    for &op in &operations {
                        creations.push(
                            AclCreation::default()
                                .with_resource_type(resource_type)
                                .with_resource_name(text(&name))
                                .with_resource_pattern_type(pattern)
                                .with_principal(text(principal))
                                .with_host(text(&host))
                                .with_operation(op)
                                .with_permission_type(permission),
                        );
                    }
                }
            }
            let count = creations.len();
            let (response, _) = connection.send(&CreateAclsRequest::default().with_creations(creations)).await.context("creating ACLs")?;
            if response.results.len() != count {
                bail!("the broker answered {} results for {count} ACLs", response.results.len());
            }
            for result in &response.results {
                if let Some(e) = wire::error_of(result.error_code, result.error_message.as_ref()) {
                    bail!("creating ACLs: {e}");
                }
            }
            println!("created {count} ACL(s) on {} {name:?}", resource_type_name(resource_type));
            Ok(())
        }
        AclCommand::List { resource: resource_args, principal } => {
            let named = resource(&resource_args)?;
            let request = DescribeAclsRequest::default()
                .with_resource_type_filter(named.as_ref().map_or(ANY, |(t, _)| *t))
                .with_resource_name_filter(named.as_ref().map(|(_, n)| text(n)))
                .with_pattern_type_filter(pattern_type(resource_args.resource_pattern_type.as_deref(), ANY)?)
                .with_principal_filter(principal.as_deref().map(text))
                .with_host_filter(None)
                .with_operation(ANY)
                .with_permission_type(ANY);
            let (response, _) = connection.send(&request).await.context("listing ACLs")?;
            if let Some(e) = wire::error_of(response.error_code, response.error_message.as_ref()) {
                bail!("listing ACLs: {e}");
            }
            println!("resource_type\tresource\tpattern\tprincipal\thost\toperation\tpermission");
            for resource in &response.resources {
                for acl in &resource.acls {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        resource_type_name(resource.resource_type),
                        resource.resource_name.as_str(),
                        pattern_name(resource.pattern_type),
                        acl.principal.as_str(),
                        acl.host.as_str(),
                        operation_name(acl.operation),
                        permission_name(acl.permission_type)
                    );
                }
            }
            Ok(())
        }
        AclCommand::Delete { resource: resource_args, principal, operation } => {
            let named = resource(&resource_args)?;
            let filter = DeleteAclsFilter::default()
                .with_resource_type_filter(named.as_ref().map_or(ANY, |(t, _)| *t))
                .with_resource_name_filter(named.as_ref().map(|(_, n)| text(n)))
                .with_pattern_type_filter(pattern_type(resource_args.resource_pattern_type.as_deref(), ANY)?)
                .with_principal_filter(principal.as_deref().map(text))
                .with_host_filter(None)
                .with_operation(operation.as_deref().map(operation_code).transpose()?.unwrap_or(ANY))
                .with_permission_type(ANY);
            let (response, _) = connection.send(&DeleteAclsRequest::default().with_filters(vec![filter])).await.context("deleting ACLs")?;
            let mut deleted = 0;
            for result in &response.filter_results {
                if let Some(e) = wire::error_of(result.error_code, result.error_message.as_ref()) {
                    bail!("deleting ACLs: {e}");
                }
                for acl in &result.matching_acls {
                    if let Some(e) = wire::error_of(acl.error_code, acl.error_message.as_ref()) {
                        bail!("deleting an ACL on {}: {e}", acl.resource_name.as_str());
                    }
                    deleted += 1;
                    println!(
                        "deleted {} {} {} {} {}",
                        permission_name(acl.permission_type),
                        acl.principal.as_str(),
                        operation_name(acl.operation),
                        resource_type_name(acl.resource_type),
                        acl.resource_name.as_str()
                    );
                }
            }
            println!("{deleted} ACL(s) deleted");
            Ok(())
        }
    }
}
