//! AlterUserScramCredentials (key 51, v0; KIP-554): deletes and upserts SCRAM
//! credentials in the cluster metadata. An upsertion carries the salt and the
//! salted password the client computed; this broker turns the salted password
//! into StoredKey and ServerKey at once (so it goes no further, and never into
//! the metadata log), and the active controller checks and commits them
//! (`ControllerRequest::AlterUserScramCredentials`, Kafka's error codes). The
//! answer waits until this broker's image has the changes, so authenticating
//! here right after succeeds.

use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::controller::{ScramDeletion, ScramUpsertion};
use runnel_controller::{ControllerRequest, ControllerResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::cluster::APPLY_WAIT;
use crate::security::scram::ScramMechanism;
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AlterUserScramCredentialsRequest,
) -> Reply<AlterUserScramCredentialsResponse> {
    if !Authz::new(broker, ctx).cluster(operation::ALTER) {
        // Kafka: every user named gets CLUSTER_AUTHORIZATION_FAILED.
        let code = kafka_protocol::error::ResponseError::ClusterAuthorizationFailed.code();
        let mut users: Vec<&str> = Vec::new();
        for user in req.deletions.iter().map(|d| d.name.as_str()).chain(req.upsertions.iter().map(|u| u.name.as_str())) {
            if !users.contains(&user) {
                users.push(user);
            }
        }
        let results = users
            .into_iter()
            .map(|user| AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(user.to_string())).with_error_code(code))
            .collect();
        return Reply::Now(AlterUserScramCredentialsResponse::default().with_results(results));
    }
    let deletions: Vec<ScramDeletion> =
        req.deletions.iter().map(|d| ScramDeletion { name: d.name.to_string(), mechanism: d.mechanism }).collect();
    let upsertions: Vec<ScramUpsertion> = req
        .upsertions
        .iter()
        .map(|u| {
            // An unknown mechanism or an empty salted password leaves the keys empty: the controller refuses them.
            let (stored_key, server_key) = match ScramMechanism::from_type(u.mechanism) {
                Some(mechanism) if !u.salted_password.is_empty() => mechanism.stored_and_server_keys(&u.salted_password),
                _ => (Vec::new(), Vec::new()),
            };
            ScramUpsertion { name: u.name.to_string(), mechanism: u.mechanism, iterations: u.iterations, salt: u.salt.to_vec(), stored_key, server_key }
        })
        .collect();
    let every_user: Vec<String> = deletions.iter().map(|d| d.name.clone()).chain(upsertions.iter().map(|u| u.name.clone())).collect();
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let request = ControllerRequest::AlterUserScramCredentials { deletions: deletions.clone(), upsertions: upsertions.clone() };
        let results = match broker.cluster.submit(request).await {
            Ok(ControllerResponse::ScramCredentialsAltered { results }) => results,
            Ok(other) => {
                tracing::error!(answer = ?other, "AlterUserScramCredentials: unexpected controller answer");
                let code = kafka_protocol::error::ResponseError::UnknownServerError.code();
                let mut seen = Vec::new();
                every_user.into_iter().filter(|u| if seen.contains(u) { false } else { seen.push(u.clone()); true }).map(|u| (u, code, None)).collect()
            }
            Err(error) => {
                let mut seen = Vec::new();
                every_user
                    .into_iter()
                    .filter(|u| if seen.contains(u) { false } else { seen.push(u.clone()); true })
                    .map(|u| (u, error.code(), error.message.clone()))
                    .collect()
            }
        };
        // Wait until this broker's image shows the committed changes.
        let done: Vec<&String> = results.iter().filter(|(_, code, _)| *code == 0).map(|(user, _, _)| user).collect();
        if !done.is_empty() {
            let applied = broker
                .cluster
                .wait_for_image(APPLY_WAIT, |image| {
                    let has = |name: &str, mechanism: i8| image.scram_credentials.get(name).is_some_and(|m| m.contains_key(&mechanism));
                    deletions.iter().filter(|d| done.contains(&&d.name)).all(|d| !has(&d.name, d.mechanism))
                        && upsertions.iter().filter(|u| done.contains(&&u.name)).all(|u| {
                            image.scram_credentials.get(&u.name).and_then(|m| m.get(&u.mechanism)).is_some_and(|c| c.stored_key == u.stored_key)
                        })
                })
                .await;
            if !applied {
                tracing::info!("AlterUserScramCredentials: the changes are committed but not yet applied here");
            }
        }
        let results = results
            .into_iter()
            .map(|(user, code, message)| {
                AlterUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user))
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
            })
            .collect();
        AlterUserScramCredentialsResponse::default().with_results(results)
    }))
}
