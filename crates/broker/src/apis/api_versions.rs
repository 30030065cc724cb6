//! ApiVersions (key 18): what this broker speaks, from [`super::SUPPORTED_APIS`],
//! and from v3 the features (KIP-584): `transaction.version` supported 0-2
//! and finalized at the `transaction.version` config (KIP-890; 2 by default,
//! as a new Kafka 4 cluster), which tells clients whether to speak
//! transactions v2.

use std::sync::{Arc, OnceLock};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, RequestContext, SUPPORTED_APIS};
use crate::Broker;

fn advertised() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| ApiVersion::default().with_api_key(*key as i16).with_min_version(*min).with_max_version(*max))
        .collect()
}

pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// The highest `transaction.version` this broker implements (KIP-890's TV_2).
pub const MAX_TRANSACTION_VERSION: i16 = 2;

/// The finalized features' epoch: clients keep the highest epoch they saw and
/// ignore answers with a lower one, so a restart with another
/// `transaction.version` must not go backwards. The start time does that
/// (Kafka uses its metadata log offset).
fn finalized_features_epoch() -> i64 {
    static EPOCH: OnceLock<i64> = OnceLock::new();
    *EPOCH.get_or_init(crate::now_ms)
}

/// The feature fields of an answer at `version` (v3+), as Kafka 4 fills them:
/// a feature whose minimum is 0 is listed as supported only from v4 (older
/// clients read 0 as "no such feature"), and a feature finalized at level 0
/// is not listed as finalized.
fn with_features(response: ApiVersionsResponse, version: i16, transaction_version: i16) -> ApiVersionsResponse {
    if version < 3 {
        return response;
    }
    let name = || StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    let supported = if version >= 4 {
        vec![SupportedFeatureKey::default().with_name(name()).with_min_version(0).with_max_version(MAX_TRANSACTION_VERSION)]
    } else {
        Vec::new()
    };
    let finalized = if transaction_version > 0 {
        vec![FinalizedFeatureKey::default().with_name(name()).with_min_version_level(transaction_version).with_max_version_level(transaction_version)]
    } else {
        Vec::new()
    };
    response.with_supported_features(supported).with_finalized_features_epoch(finalized_features_epoch()).with_finalized_features(finalized)
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ApiVersionsRequest) -> Reply<ApiVersionsResponse> {
    // KIP-511: from v3 the client names its software; a name or version
    // outside the pattern is refused (Kafka answers INVALID_REQUEST, no APIs).
    if ctx.version >= 3 && !(is_valid_software_field(&req.client_software_name) && is_valid_software_field(&req.client_software_version)) {
        return Reply::Now(ApiVersionsResponse::default().with_error_code(ResponseError::InvalidRequest.code()));
    }
    let response = ApiVersionsResponse::default().with_api_keys(advertised()).with_finalized_features_epoch(-1);
    Reply::Now(with_features(response, ctx.version, broker.config.transaction_version))
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
    use super::*;

    #[test]
    fn features_follow_kafka_4_per_version() {
        let v4 = with_features(ApiVersionsResponse::default(), 4, 2);
        assert_eq!(v4.supported_features.len(), 1);
        assert_eq!((v4.supported_features[0].min_version, v4.supported_features[0].max_version), (0, 2));
        assert_eq!(v4.finalized_features.len(), 1);
        let tv = &v4.finalized_features[0];
        assert_eq!((tv.name.as_str(), tv.min_version_level, tv.max_version_level), ("transaction.version", 2, 2));
        assert!(v4.finalized_features_epoch >= 0);
        // v3: a feature with minimum 0 is not listed as supported; finalized still is.
        let v3 = with_features(ApiVersionsResponse::default(), 3, 2);
        assert!(v3.supported_features.is_empty());
        assert_eq!(v3.finalized_features.len(), 1);
        // Pinned to 0: nothing finalized, so clients speak transactions v1.
        assert!(with_features(ApiVersionsResponse::default(), 4, 0).finalized_features.is_empty());
    }

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
