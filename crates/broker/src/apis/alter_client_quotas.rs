//! AlterClientQuotas (key 49, v0-1, KIP-546): sets or removes quota keys of
//! user / client-id / ip entities in the cluster metadata. As Kafka: ALTER_CONFIGS
//! on the cluster is required (CLUSTER_AUTHORIZATION_FAILED on every entry); the
//! active controller checks each entry (`runnel_controller::quota::alter`, Kafka's
//! `ClientQuotaControlManager`) and commits the valid ones (`ClientQuota` records),
//! nothing with `validate_only`. The answer waits until this broker's image has
//! them, so they are enforced here once answered.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::acl::operation;
use runnel_controller::quota::{validate_entity, QuotaAlteration};
use runnel_controller::{ControllerRequest, ControllerResponse};

use super::{Authz, Reply, RequestContext};
use crate::cluster::APPLY_WAIT;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: AlterClientQuotasRequest) -> Reply<AlterClientQuotasResponse> {
    let alterations: Vec<QuotaAlteration> = req
        .entries
        .iter()
        .map(|entry| QuotaAlteration {
            entity: entry.entity.iter().map(|e| (e.entity_type.to_string(), e.entity_name.as_ref().map(|n| n.to_string()))).collect(),
            ops: entry.ops.iter().map(|op| (op.key.to_string(), (!op.remove).then_some(op.value))).collect(),
        })
        .collect();
    let answer = move |results: Vec<(i16, Option<String>)>, alterations: &[QuotaAlteration]| {
        let entries = alterations
            .iter()
            .zip(results)
            .map(|(alteration, (code, message))| {
                EntryData::default()
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
                    .with_entity(
                        alteration
                            .entity
                            .iter()
                            .map(|(t, n)| {
                                EntityData::default()
                                    .with_entity_type(StrBytes::from_string(t.clone()))
                                    .with_entity_name(n.clone().map(StrBytes::from_string))
                            })
                            .collect(),
                    )
            })
            .collect();
        AlterClientQuotasResponse::default().with_entries(entries)
    };
    if !Authz::new(broker, ctx).cluster(operation::ALTER_CONFIGS) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let results = alterations.iter().map(|_| (code, Some("Cluster authorization failed.".to_string()))).collect();
        return Reply::Now(answer(results, &alterations));
    }
    let broker = broker.clone();
    let validate_only = req.validate_only;
    Reply::Later(Box::pin(async move {
        let count = alterations.len();
        let request = ControllerRequest::AlterClientQuotas { alterations: alterations.clone(), validate_only };
        let results = match broker.cluster.submit(request).await {
            Ok(ControllerResponse::ClientQuotasAltered { results }) if results.len() == count => results,
            Ok(other) => {
                tracing::error!(answer = ?other, "AlterClientQuotas: unexpected controller answer");
                vec![(ResponseError::UnknownServerError.code(), None); count]
            }
            Err(error) => vec![(error.code(), error.message.clone()); count],
        };
        if !validate_only {
            // Each accepted entry's keys as the image will hold them.
            let expected: Vec<(Vec<(String, Option<String>)>, String, Option<f64>)> = alterations
                .iter()
                .zip(&results)
                .filter(|(_, (code, _))| *code == 0)
                .filter_map(|(alteration, _)| validate_entity(&alteration.entity).ok().map(|entity| (entity, &alteration.ops)))
                .flat_map(|(entity, ops)| ops.iter().map(move |(key, value)| (entity.clone(), key.clone(), *value)))
                .collect();
            if !expected.is_empty() {
                let applied = broker
                    .cluster
                    .wait_for_image(APPLY_WAIT, |image| {
                        expected.iter().all(|(entity, key, value)| {
                            image.client_quotas.get(entity).and_then(|keys| keys.get(key)).map(|v| v.0) == *value
                        })
                    })
                    .await;
                if !applied {
                    tracing::info!("AlterClientQuotas: the quotas are committed but not yet applied here");
                }
            }
        }
        answer(results, &alterations)
    }))
}
