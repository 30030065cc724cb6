//! DescribeUserScramCredentials (key 50, v0; KIP-554): each user's SCRAM
//! mechanisms and iterations, from this broker's cluster metadata image (as
//! Kafka answers from its metadata cache) — never a salt or key. Null or no
//! users: every user with a credential. As Kafka: RESOURCE_NOT_FOUND for a user
//! without any, DUPLICATE_RESOURCE for a user named twice.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeUserScramCredentialsRequest,
) -> Reply<DescribeUserScramCredentialsResponse> {
    if !Authz::new(broker, ctx).cluster(operation::DESCRIBE) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        return Reply::Now(DescribeUserScramCredentialsResponse::default().with_error_code(code));
    }
    let image = broker.cluster.image();
    // (user, named more than once), in the request's order.
    let mut users: Vec<(String, bool)> = Vec::new();
    match req.users.as_deref() {
        None | Some([]) => users.extend(image.scram_credentials.keys().map(|u| (u.clone(), false))),
        Some(named) => {
            for user in named {
                match users.iter_mut().find(|(u, _)| u.as_str() == user.name.as_str()) {
                    Some(seen) => seen.1 = true,
                    None => users.push((user.name.to_string(), false)),
                }
            }
        }
    }
    let results = users
        .into_iter()
        .map(|(user, duplicate)| {
            let result = DescribeUserScramCredentialsResult::default().with_user(StrBytes::from_string(user.clone()));
            if duplicate {
                let message = format!("Cannot describe SCRAM credentials for the same user twice in a single request: {user}");
                return result.with_error_code(ResponseError::DuplicateResource.code()).with_error_message(Some(StrBytes::from_string(message)));
            }
            match image.scram_credentials.get(&user) {
                Some(by_mechanism) if !by_mechanism.is_empty() => result.with_credential_infos(
                    by_mechanism
                        .iter()
                        .map(|(mechanism, credential)| CredentialInfo::default().with_mechanism(*mechanism).with_iterations(credential.iterations))
                        .collect(),
                ),
                _ => {
                    let message = format!("Attempt to describe a user credential that does not exist: {user}");
                    result.with_error_code(ResponseError::ResourceNotFound.code()).with_error_message(Some(StrBytes::from_string(message)))
                }
            }
        })
        .collect();
    Reply::Now(DescribeUserScramCredentialsResponse::default().with_results(results))
}
