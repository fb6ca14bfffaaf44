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
