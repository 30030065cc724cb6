//! `runnel quota set|list|delete`: client quotas through AlterClientQuotas and
//! DescribeClientQuotas (KIP-546), in the spirit of Kafka's `kafka-configs.sh
//! --entity-type users|clients|ips --add-config producer_byte_rate=...`. An
//! entity is a user, a client id, both, or an ip; `--user-default` and the like
//! name the default entity (Kafka's `<default>`).

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::{alter_client_quotas_request as alter, describe_client_quotas_request as describe};
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;

use crate::wire::{self, Connection};
use crate::{parse_key_value, ClientArgs};

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct EntityArgs {
    /// A user (the principal's name, e.g. alice for User:alice).
    #[arg(long, conflicts_with = "user_default")]
    user: Option<String>,
    /// The default user quota (`<default>`): every user without their own.
    #[arg(long)]
    user_default: bool,
    /// A client id.
    #[arg(long, conflicts_with = "client_default")]
    client_id: Option<String>,
    /// The default client-id quota (`<default>`).
    #[arg(long)]
    client_default: bool,
    /// A client IP address (connection_creation_rate only).
    #[arg(long, conflicts_with = "ip_default")]
    ip: Option<String>,
    /// The default IP quota (`<default>`).
    #[arg(long)]
    ip_default: bool,
}

impl EntityArgs {
    /// (entity type, Some(name) | None for the default) per named type.
    fn entity(&self) -> Vec<(&'static str, Option<String>)> {
        let mut entity = Vec::new();
        for (entity_type, name, default) in [
            ("user", &self.user, self.user_default),
            ("client-id", &self.client_id, self.client_default),
            ("ip", &self.ip, self.ip_default),
        ] {
            if name.is_some() || default {
                entity.push((entity_type, name.clone()));
            }
        }
        entity
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum QuotaCommand {
    /// Set quotas of an entity: producer_byte_rate, consumer_byte_rate, request_percentage,
    /// controller_mutation_rate (users, client ids), connection_creation_rate (ips).
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// KEY=VALUE (repeatable), e.g. producer_byte_rate=1048576.
        #[arg(required = true, value_name = "KEY=VALUE")]
        quotas: Vec<String>,
        /// Only check the change; write nothing.
        #[arg(long)]
        validate_only: bool,
    },
    /// List quotas: every entity, or those of the entity types named (a name, a default, or any with --any-*).
    List {
        #[command(flatten)]
        entity: EntityArgs,
        /// Also match every user / client id / ip (repeatable type names: user, client-id, ip).
        #[arg(long = "any", value_name = "TYPE")]
        any: Vec<String>,
        /// Only entities with no other type than those named.
        #[arg(long)]
        strict: bool,
    },
    /// Remove quota keys of an entity.
    Delete {
        #[command(flatten)]
        entity: EntityArgs,
        /// The keys to remove (repeatable).
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// `user=alice, client-id=<default>`.
fn entity_text(entity: &[(String, Option<String>)]) -> String {
    entity.iter().map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("<default>"))).collect::<Vec<_>>().join(", ")
}

async fn alter_one(connection: &mut Connection, entity: &EntityArgs, ops: Vec<(String, Option<f64>)>, validate_only: bool) -> Result<String> {
    let entity = entity.entity();
    if entity.is_empty() {
        bail!("name the entity: --user/--user-default, --client-id/--client-default, --ip/--ip-default");
    }
    let entry = alter::EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| alter::EntityData::default().with_entity_type(text(t)).with_entity_name(n.as_deref().map(text)))
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(key, value)| alter::OpData::default().with_key(text(key)).with_value(value.unwrap_or(0.0)).with_remove(value.is_none()))
                .collect(),
        );
    let request = AlterClientQuotasRequest::default().with_entries(vec![entry]).with_validate_only(validate_only);
    let (response, _) = connection.send(&request).await.context("altering client quotas")?;
    let Some(result) = response.entries.first() else { bail!("the broker answered no result") };
    if let Some(e) = wire::error_of(result.error_code, result.error_message.as_ref()) {
        bail!("altering client quotas: {e}");
    }
    Ok(entity_text(&entity.into_iter().map(|(t, n)| (t.to_string(), n)).collect::<Vec<_>>()))
}

pub async fn run(args: &ClientArgs, cmd: QuotaCommand) -> Result<()> {
    let mut connection = Connection::open(&args.brokers).await?;
    match cmd {
        QuotaCommand::Set { entity, quotas, validate_only } => {
            let mut ops = Vec::new();
            for pair in &quotas {
                let (key, value) = parse_key_value(pair)?;
                let value: f64 = value.trim().parse().with_context(|| format!("{key}: {value:?} is not a number"))?;
                ops.push((key, Some(value)));
            }
            let name = alter_one(&mut connection, &entity, ops, validate_only).await?;
            if validate_only {
                println!("valid: {} for {name}", quotas.join(", "));
            } else {
                println!("set {} for {name}", quotas.join(", "));
            }
            Ok(())
        }
        QuotaCommand::Delete { entity, keys } => {
            let ops = keys.iter().map(|k| (k.clone(), None)).collect();
            let name = alter_one(&mut connection, &entity, ops, false).await?;
            println!("deleted {} for {name}", keys.join(", "));
            Ok(())
        }
        QuotaCommand::List { entity, any, strict } => {
            let mut components: Vec<describe::ComponentData> = entity
                .entity()
                .into_iter()
                .map(|(t, n)| {
                    describe::ComponentData::default()
                        .with_entity_type(text(t))
                        .with_match_type(if n.is_some() { MATCH_EXACT } else { MATCH_DEFAULT })
                        .with_match(n.as_deref().map(text))
                })
                .collect();
            for entity_type in &any {
                components.push(describe::ComponentData::default().with_entity_type(text(entity_type)).with_match_type(MATCH_ANY).with_match(None));
            }
            let request = DescribeClientQuotasRequest::default().with_components(components).with_strict(strict);
            let (response, _) = connection.send(&request).await.context("listing client quotas")?;
            if let Some(e) = wire::error_of(response.error_code, response.error_message.as_ref()) {
                bail!("listing client quotas: {e}");
            }
            let mut rows: Vec<(String, String, f64)> = Vec::new();
            for entry in response.entries.iter().flatten() {
                let entity: Vec<(String, Option<String>)> =
                    entry.entity.iter().map(|e| (e.entity_type.to_string(), e.entity_name.as_ref().map(|n| n.to_string()))).collect();
                let mut sorted = entity.clone();
                sorted.sort();
                for value in &entry.values {
                    rows.push((entity_text(&sorted), value.key.to_string(), value.value));
                }
            }
            rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            println!("entity\tkey\tvalue");
            for (entity, key, value) in rows {
                println!("{entity}\t{key}\t{value}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_name_types_in_kafkas_order() {
        let args = EntityArgs { user: Some("alice".into()), client_default: true, ..Default::default() };
        assert_eq!(args.entity(), vec![("user", Some("alice".to_string())), ("client-id", None)]);
        assert!(EntityArgs::default().entity().is_empty());
        assert_eq!(entity_text(&[("client-id".into(), None), ("user".into(), Some("a".into()))]), "client-id=<default>, user=a");
    }
}
