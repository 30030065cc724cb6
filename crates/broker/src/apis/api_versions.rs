//! ApiVersions (key 18): what this broker speaks, from [`super::SUPPORTED_APIS`].

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{Reply, RequestContext, SUPPORTED_APIS};
use crate::Broker;

fn advertised() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| ApiVersion::default().with_api_key(*key as i16).with_min_version(*min).with_max_version(*max))
        .collect()
}

pub async fn handle(_broker: &Arc<Broker>, _ctx: &RequestContext, _req: ApiVersionsRequest) -> Reply<ApiVersionsResponse> {
    Reply::Now(ApiVersionsResponse::default().with_api_keys(advertised()).with_finalized_features_epoch(-1))
}

/// The v0-format answer to an ApiVersions version we do not know.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(advertised())
}
