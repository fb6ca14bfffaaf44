//! The item store: the only module that talks to DynamoDB. It speaks in JSON items and typed
//! errors; it never decides HTTP statuses.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::attributes::{self, Attributes};
use crate::item::{self, Item};

/// What can go wrong in the store, in terms the API can map.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write's condition did not hold (the item exists, or its version moved).
    #[error("condition failed")]
    ConditionFailed,
    /// DynamoDB kept throttling after the SDK's retries.
    #[error("throttled by DynamoDB ({0})")]
    Throttled(String),
    /// DynamoDB could not be reached or did not answer in time.
    #[error("DynamoDB unavailable: {0}")]
    Unavailable(String),
    /// DynamoDB refused the item as invalid (e.g. too large by its own count).
    #[error("DynamoDB rejected the item: {0}")]
    Rejected(String),
    /// Anything else: a bug or a surprise; logged, never shown to clients.
    #[error("unexpected DynamoDB error: {0}")]
    Unexpected(String),
}

/// How a put is conditioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    /// The id must be free.
    MustNotExist,
    /// The item must exist at this version (0: it exists without a version attribute).
    VersionIs(u64),
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Item>,
    /// The id to continue after, if there may be more.
    pub last_id: Option<String>,
}

/// DynamoDB-backed items of one table in one region.
#[derive(Clone, Debug)]
pub struct ItemStore {
    client: Client,
    table: String,
}

/// The SDK's HTTP client: hyper with rustls on ring (HTTPS to DynamoDB, plain HTTP locally).
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The SDK timeouts: one attempt may take 2 s, a whole call (with retries) 5 s.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

impl ItemStore {
    /// A store on `table` in `region`, with endpoint and credentials from the standard AWS
    /// environment (`AWS_ENDPOINT_URL_DYNAMODB` points it at a local server).
    pub async fn connect(region: &str, table: &str) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .build();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            .region(aws_config::Region::new(region.to_owned()))
            .timeout_config(timeouts)
            .load()
            .await;
        Self {
            client: Client::new(&shared),
            table: table.to_owned(),
        }
    }

    fn key(id: &str) -> Attributes {
        Attributes::from([(item::ID.to_owned(), AttributeValue::S(id.to_owned()))])
    }

    /// Reads an item (strongly consistent within this region).
    pub async fn get(&self, id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        out.item().map(decode).transpose()
    }

    /// Writes an item under a condition.
    pub async fn put(&self, item: &Attributes, condition: PutCondition) -> Result<(), StoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .expression_attribute_names("#id", item::ID);
        let request = match condition {
            PutCondition::MustNotExist => request.condition_expression("attribute_not_exists(#id)"),
            // An item written by another tool, without a version.
            PutCondition::VersionIs(0) => request
                .condition_expression("attribute_exists(#id) AND attribute_not_exists(#v)")
                .expression_attribute_names("#v", item::VERSION),
            PutCondition::VersionIs(v) => request
                .condition_expression("attribute_exists(#id) AND #v = :v")
                .expression_attribute_names("#v", item::VERSION)
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        request.send().await.map(|_| ()).map_err(classify)
    }

    /// Deletes an item, optionally only at a given version; returns what was deleted.
    pub async fn delete(&self, id: &str, version: Option<u64>) -> Result<Option<Item>, StoreError> {
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
        if let Some(v) = version {
            request = request
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", item::VERSION)
                .expression_attribute_values(":v", AttributeValue::N(v.to_string()));
        }
        let out = request.send().await.map_err(classify)?;
        out.attributes().map(decode).transpose()
    }

    /// Lists up to `limit` items after `after` (a scan: order is the table's, not sorted).
    pub async fn list(&self, limit: i32, after: Option<&str>) -> Result<Page, StoreError> {
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(limit)
            .set_exclusive_start_key(after.map(Self::key))
            .send()
            .await
            .map_err(classify)?;
        let items = out.items().iter().map(decode).collect::<Result<_, _>>()?;
        let last_id = out
            .last_evaluated_key()
            .and_then(|k| k.get(item::ID))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok(Page { items, last_id })
    }

    /// Checks that the table answers (a read of a key that never exists).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.get("\u{1}health-probe").await.map(|_| ())
    }
}

fn decode(attributes: &Attributes) -> Result<Item, StoreError> {
    attributes::to_item(attributes).map_err(|e| StoreError::Unexpected(e.to_string()))
}

fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            StoreError::Unavailable(format!("{err:?}"))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown").to_owned();
            match code.as_str() {
                "ConditionalCheckFailedException" => StoreError::ConditionFailed,
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "LimitExceededException" => StoreError::Throttled(code),
                "ResourceNotFoundException" | "InternalServerError" | "ServiceUnavailable" => {
                    StoreError::Unavailable(code)
                }
                "ValidationException" => StoreError::Rejected(
                    service
                        .err()
                        .message()
                        .unwrap_or("validation failed")
                        .to_owned(),
                ),
                _ => StoreError::Unexpected(format!("{code}: {:?}", service.err().message())),
            }
        }
        _ => StoreError::Unexpected(format!("{err:?}")),
    }
}
