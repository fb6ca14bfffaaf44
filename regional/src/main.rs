//! Entry point: reads the configuration, then serves the router on Lambda (when
//! `AWS_LAMBDA_RUNTIME_API` is set) or on plain HTTP.
//!
//! In Lambda one execution environment serves one invocation at a time, so the runtime is
//! single-threaded there: the runtime loop, the router and the SDK's connections share one
//! thread instead of handing every invocation between threads (measured in
//! docs/benchmarks.md). Locally the server is multi-threaded.
//!
//! The Lambda runtime is `lambda_http::run` without its per-invocation tracing span (the
//! `TracingLayer` it adds): our log line carries the request id itself and the logs never print
//! spans, so the span was work for nothing on every invocation.

use std::process::ExitCode;

use regional::{app, config::Config, lambda, observability};
use tower::ServiceExt;

/// mimalloc instead of glibc's malloc: each invocation allocates and frees a few hundred small
/// buffers (the event, headers, the SDK's request and config layers); measured in
/// docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let runtime = if in_lambda {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match runtime {
        Ok(runtime) => runtime.block_on(serve()),
        Err(e) => {
            eprintln!("regional: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    let config = match Config::from_vars(std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("regional: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    observability::init_logging(config.in_lambda);
    let router = app::router(app::state(&config).await);

    if config.in_lambda {
        let service = router.map_request(lambda::strip_stage);
        // What `lambda_http::run` builds, minus its `TracingLayer` (`lambda_http::runtime` would
        // do the same but wants a `Sync` response, which axum's body is not).
        let runtime =
            lambda_http::lambda_runtime::Runtime::new(lambda_http::Adapter::from(service));
        return match runtime.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("regional: lambda runtime stopped: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let listener = match tokio::net::TcpListener::bind(config.listen_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("regional: cannot listen on {}: {e}", config.listen_addr);
            return ExitCode::from(2);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(addr = %addr, region = %config.region, table = %config.table, "listening");
    match axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regional: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return interrupt.await.unwrap_or(()),
            };
        tokio::select! {
            _ = interrupt => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
