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

pub async fn handle(_broker: &Arc<Broker>, ctx: &RequestContext, req: ApiVersionsRequest) -> Reply<ApiVersionsResponse> {
    // KIP-511: from v3 the client names its software; a name or version
    // outside the pattern is refused (Kafka answers INVALID_REQUEST, no APIs).
    if ctx.version >= 3 && !(is_valid_software_field(&req.client_software_name) && is_valid_software_field(&req.client_software_version)) {
        return Reply::Now(ApiVersionsResponse::default().with_error_code(ResponseError::InvalidRequest.code()));
    }
    Reply::Now(ApiVersionsResponse::default().with_api_keys(advertised()).with_finalized_features_epoch(-1))
}

/// KIP-511's `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`: alphanumerics,
/// with dashes and dots allowed only inside.
fn is_valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_valid_software_field;

    #[test]
    fn software_name_pattern_follows_kip_511() {
        for good in ["a", "librdkafka", "apache-kafka-java", "3.9.0", "1.0-SNAPSHOT", "x.y"] {
            assert!(is_valid_software_field(good), "{good:?} should be accepted");
        }
        for bad in ["", "bad name!", "-lead", "trail.", "under_score", "sp ace"] {
            assert!(!is_valid_software_field(bad), "{bad:?} should be refused");
        }
    }
}

/// The v0-format answer to an ApiVersions version we do not know.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(advertised())
}
