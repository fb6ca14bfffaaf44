//! The Lambda path: an API Gateway HTTP API (payload 2.0) event goes through `lambda_http`'s
//! request conversion, the stage stripping and the same router the local server uses.

use http_body_util::BodyExt;
use regional::{app, config::Config, lambda};
use tower::ServiceExt;

fn event(raw_path: &str, stage: &str) -> String {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {"host": "abc123.execute-api.eu-west-1.amazonaws.com", "x-request-id": "evt-1"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": "GET", "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": "192.0.2.1", "userAgent": "test"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": stage,
            "time": "29/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1_795_946_400_000u64
        },
        "isBase64Encoded": false
    })
    .to_string()
}

async fn call(raw_path: &str, stage: &str, status: &str) -> (u16, serde_json::Value, String) {
    let config = Config::from_vars([
        ("AWS_REGION", "eu-west-1"),
        ("TABLE_NAME", "items"),
        ("STATUS", status),
        // Never used: /health makes no DynamoDB call.
        ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9"),
    ])
    .unwrap();
    let router = app::router(app::state(&config).await);
    let request = lambda_http::request::from_str(&event(raw_path, stage)).unwrap();
    let response = router
        .map_request(lambda::strip_stage)
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let served_by = response.headers()["x-served-by"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap(), served_by)
}

#[tokio::test]
async fn health_through_a_named_stage() {
    let (status, body, served_by) = call("/dev/health", "dev", "200").await;
    assert_eq!(status, 200);
    assert_eq!(body["region"], "eu-west-1");
    assert_eq!(served_by, "eu-west-1");
}

#[tokio::test]
async fn health_behind_a_custom_domain_and_default_stage() {
    assert_eq!(call("/health", "dev", "200").await.0, 200);
    assert_eq!(call("/health", "$default", "200").await.0, 200);
}

#[tokio::test]
async fn forced_status_reaches_lambda_clients() {
    let (status, body, _) = call("/dev/health", "dev", "404").await;
    assert_eq!(status, 404);
    assert_eq!(body["status"], "unhealthy");
}

#[tokio::test]
async fn unknown_paths_stay_json_404() {
    let (status, body, _) = call("/dev/nowhere", "dev", "200").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "route_not_found");
}

#[tokio::test]
async fn lambda_http_keeps_the_stage_so_the_adapter_must_strip_it() {
    let request = lambda_http::request::from_str(&event("/dev/health", "dev")).unwrap();
    assert_eq!(request.uri().path(), "/dev/health");
    assert_eq!(lambda::strip_stage(request).uri().path(), "/health");
}

/// An item route reached through API Gateway's `AWS_IAM` authorizer, by `caller` (the IAM user
/// ARN it verified; `None`: no IAM context at all).
async fn item_call_by(caller: Option<&str>) -> (u16, serde_json::Value) {
    let edge = "arn:aws:iam::123456789012:user/tandem-edge";
    let config = Config::from_vars([
        ("AWS_REGION", "eu-west-1"),
        ("TABLE_NAME", "items"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("EDGE_CALLER_ARN", edge),
        // Nothing listens here: a request let through fails fast at the table, never with a 403.
        ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9"),
    ])
    .unwrap();
    let router = app::router(app::state(&config).await);
    let mut event: serde_json::Value =
        serde_json::from_str(&event("/items/a1", "$default")).unwrap();
    if let Some(arn) = caller {
        event["requestContext"]["authorizer"] = serde_json::json!({"iam": {
            "accessKey": "AKIDEXAMPLE", "accountId": "123456789012", "callerId": "AIDAEXAMPLE",
            "principalOrgId": null, "userArn": arn, "userId": "AIDAEXAMPLE"}});
    }
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = router
        .map_request(lambda::strip_stage)
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn in_lambda_only_the_edges_iam_user_reaches_the_items() {
    for caller in [None, Some("arn:aws:iam::123456789012:user/someone-else")] {
        let (status, body) = item_call_by(caller).await;
        assert_eq!(status, 403, "{caller:?}");
        assert_eq!(body["error"]["code"], "caller_not_edge");
    }
    let (status, body) = item_call_by(Some("arn:aws:iam::123456789012:user/tandem-edge")).await;
    assert_ne!(status, 403, "the edge's own calls pass the guard: {body}");
    // Health stays open to API Gateway's unauthenticated route (probes, Route 53).
    assert_eq!(call("/health", "$default", "200").await.0, 200);
}
