//! The item store: the only module that talks to DynamoDB. It speaks in JSON items and typed
//! errors; it never decides HTTP statuses.

use std::time::Duration;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::attributes::{self, Attributes};
use crate::deadline;
use crate::idempotency::{self, ClaimCondition};
use crate::item::{self, Item, WriteIdentity};

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
    /// DynamoDB refused a call as invalid (a ValidationException).
    #[error("DynamoDB rejected the call: {0}")]
    Rejected(String),
    /// DynamoDB refused an item being written as invalid (a ValidationException on a PutItem:
    /// too large by its own count, or another rule on names and values).
    #[error("DynamoDB rejected the item: {0}")]
    ItemRefused(String),
    /// Another region wrote the item at the same time (multi-Region strong consistency's
    /// `ReplicatedWriteConflictException`); the client may retry.
    #[error("replicated write conflict")]
    ReplicatedConflict,
    /// The request's deadline passed before the call could be made or finished.
    #[error("the request's deadline passed")]
    DeadlineExceeded,
    /// Anything else: a bug or a surprise; logged, never shown to clients.
    #[error("unexpected DynamoDB error: {0}")]
    Unexpected(String),
}

impl From<deadline::Expired> for StoreError {
    fn from(_: deadline::Expired) -> Self {
        Self::DeadlineExceeded
    }
}

/// How a put is conditioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// The id must be free.
    MustNotExist,
    /// The item must still be the write that was read: same version, region and write time
    /// (each absent where it was absent).
    Unchanged(WriteIdentity),
    /// An idempotency key claim (see [`crate::idempotency`]).
    KeyClaim(ClaimCondition),
    /// The record must still carry this claim token (completing a claim).
    ClaimIs(String),
}

/// A condition expression with its names and values.
#[derive(Debug, Default)]
struct Condition {
    expression: String,
    names: Vec<(String, String)>,
    values: Vec<(String, AttributeValue)>,
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

impl Condition {
    fn of(condition: &PutCondition) -> Self {
        let name =
            |placeholder: &str, attribute: &str| (placeholder.to_owned(), attribute.to_owned());
        let mut c = Self {
            names: vec![name("#id", item::ID)],
            ..Self::default()
        };
        match condition {
            PutCondition::MustNotExist => c.expression = "attribute_not_exists(#id)".to_owned(),
            PutCondition::Unchanged(identity) => return Self::unchanged(identity),
            PutCondition::KeyClaim(claim) => {
                c.expression = ClaimCondition::EXPRESSION.to_owned();
                c.names
                    .extend(ClaimCondition::NAMES.iter().map(|(p, a)| name(p, a)));
                c.values = vec![
                    (":now_s".into(), n(claim.now_s)),
                    (":now_ms".into(), n(claim.now_ms)),
                    (
                        ":in_flight".into(),
                        AttributeValue::S(ClaimCondition::IN_FLIGHT.into()),
                    ),
                    (":fp".into(), AttributeValue::S(claim.fingerprint.clone())),
                ];
            }
            PutCondition::ClaimIs(token) => {
                c.expression = "#claim = :claim".to_owned();
                c.names = vec![name("#claim", ClaimCondition::CLAIM_ATTRIBUTE)];
                c.values = vec![(":claim".into(), AttributeValue::S(token.clone()))];
            }
        }
        c
    }

    fn unchanged(identity: &WriteIdentity) -> Self {
        let mut c = Self {
            expression: "attribute_exists(#id)".to_owned(),
            names: vec![("#id".into(), item::ID.into())],
            values: Vec::new(),
        };
        let fields = [
            ("#v", ":v", item::VERSION, identity.version.map(n)),
            (
                "#r",
                ":r",
                item::REGION,
                identity.region.clone().map(AttributeValue::S),
            ),
            (
                "#u",
                ":u",
                item::UPDATED_AT,
                identity.updated_at.clone().map(AttributeValue::S),
            ),
        ];
        for (placeholder, value_name, attribute, value) in fields {
            c.names.push((placeholder.into(), attribute.into()));
            match value {
                Some(v) => {
                    c.expression += &format!(" AND {placeholder} = {value_name}");
                    c.values.push((value_name.into(), v));
                }
                None => c.expression += &format!(" AND attribute_not_exists({placeholder})"),
            }
        }
        c
    }
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

/// The SDK timeouts: one attempt may take 800 ms, a whole call (with retries) 1.5 s, below the
/// edge's per-try timeout (2 s by default), so a region gives up on DynamoDB before the edge
/// gives up on it. A request's own deadline (`x-tandem-deadline-ms`) bounds every call further.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(800);
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(1500);

/// The SDK's backoff between attempts: at most 50 ms, then 100 ms (jittered), as the AWS SDKs
/// long used for DynamoDB (25 ms base). The SDK's default for throttling (1 s, doubling) would
/// run past [`OPERATION_TIMEOUT`] most of the time, so a throttled table would end as a
/// timeout (503 `table_unavailable`, a failing region at the edge) instead of as what it is
/// (503 `throttled`, marked as the region's limit).
pub const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_millis(400);

impl ItemStore {
    /// A store on `table` in `region`, with endpoint and credentials from the standard AWS
    /// environment (`AWS_ENDPOINT_URL_DYNAMODB` points it at a local server).
    pub async fn connect(region: &str, table: &str) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .build();
        // Stalled-stream protection off: it cancels a body that moves slower than its minimum only
        // after the SDK's 5 s grace period, which the 800 ms attempt timeout always beats, and it
        // wraps every body in a throughput monitor (measured in docs/benchmarks.md).
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            .region(aws_config::Region::new(region.to_owned()))
            .timeout_config(timeouts)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_initial_backoff(RETRY_INITIAL_BACKOFF)
                    .with_max_backoff(RETRY_MAX_BACKOFF),
            )
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
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
        let call = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .consistent_read(true)
            .send();
        let out = deadline::bounded(false, call).await?.map_err(classify)?;
        out.item().map(decode).transpose()
    }

    /// Writes an item under a condition (not started once the request's deadline has passed).
    pub async fn put(&self, item: &Attributes, condition: &PutCondition) -> Result<(), StoreError> {
        deadline::bounded(true, self.put_now(item, condition)).await?
    }

    /// Writes bookkeeping of the service's own (an idempotency claim's completion or release)
    /// whatever the deadline: it never touches a client's item.
    pub async fn put_bookkeeping(
        &self,
        item: &Attributes,
        condition: &PutCondition,
    ) -> Result<(), StoreError> {
        self.put_now(item, condition).await
    }

    async fn put_now(&self, item: &Attributes, condition: &PutCondition) -> Result<(), StoreError> {
        let c = Condition::of(condition);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression(c.expression)
            .set_expression_attribute_names(Some(c.names.into_iter().collect()))
            .set_expression_attribute_values(
                (!c.values.is_empty()).then(|| c.values.into_iter().collect()),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match classify(e) {
                StoreError::Rejected(reason) => StoreError::ItemRefused(reason),
                other => other,
            })
    }

    /// Deletes an item, only if it is still the write `unchanged` names when given; returns
    /// what was deleted.
    pub async fn delete(
        &self,
        id: &str,
        unchanged: Option<&WriteIdentity>,
    ) -> Result<Option<Item>, StoreError> {
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
        if let Some(identity) = unchanged {
            let c = Condition::unchanged(identity);
            request = request
                .condition_expression(c.expression)
                .set_expression_attribute_names(Some(c.names.into_iter().collect()))
                .set_expression_attribute_values(
                    (!c.values.is_empty()).then(|| c.values.into_iter().collect()),
                );
        }
        let out = deadline::bounded(true, request.send())
            .await?
            .map_err(classify)?;
        out.attributes().map(decode).transpose()
    }

    /// Releases an idempotency claim this request holds (bookkeeping: whatever the deadline).
    pub async fn release_claim(&self, record_id: &str, token: &str) -> Result<(), StoreError> {
        let c = Condition::of(&PutCondition::ClaimIs(token.to_owned()));
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(record_id)))
            .condition_expression(c.expression)
            .set_expression_attribute_names(Some(c.names.into_iter().collect()))
            .set_expression_attribute_values(Some(c.values.into_iter().collect()))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// Lists up to `limit` items after `after` (a scan: order is the table's, not sorted).
    /// Idempotency key records share the table and are left out.
    pub async fn list(&self, limit: i32, after: Option<&str>) -> Result<Page, StoreError> {
        let call = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(limit)
            .set_exclusive_start_key(after.map(Self::key))
            .send();
        let out = deadline::bounded(false, call).await?.map_err(classify)?;
        let items = out
            .items()
            .iter()
            .map(decode)
            .filter(|item| {
                !item.as_ref().is_ok_and(|i| {
                    i.get(item::ID)
                        .and_then(|v| v.as_str())
                        .is_some_and(idempotency::is_record_id)
                })
            })
            .collect::<Result<_, _>>()?;
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
                "ReplicatedWriteConflictException" => StoreError::ReplicatedConflict,
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
