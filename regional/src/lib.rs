//! The regional function: one axum `Router` that serves items from the DynamoDB global table.
//!
//! The same router runs under `lambda_http` in AWS and under `axum::serve` locally. Modules:
//! `config` (environment), `item` (pure item rules), `idempotency` (pure key-record rules),
//! `deadline` (the edge's deadline, bounding every DynamoDB call), `attributes` (JSON <-> DynamoDB values),
//! `store` (the only module that talks to DynamoDB), `origin_auth` (the edge's SigV4 signature,
//! checked), `api` (HTTP handlers; `api::caller` lets through only what the edge signed), `faults` (drill
//! switches), `observability` (request ids, logs, region header), `error` (the one place errors
//! become HTTP responses), `app` (wiring).

pub mod api;
pub mod app;
pub mod attributes;
pub mod config;
pub mod deadline;
pub mod error;
pub mod faults;
pub mod idempotency;
pub mod item;
pub mod lambda;
pub mod observability;
pub mod origin_auth;
pub mod service;
pub mod store;
