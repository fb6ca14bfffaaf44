//! The caller's token at the edge: keeps this isolate's [`TokenVerifier`], and gets it the
//! identity provider's keys — from KV when another isolate fetched them recently, else from the
//! JWKS URL (then shared through KV). Refreshes run after the response (`wait_until`), except an
//! isolate's first check, or an unknown `kid` (rate-limited by the core). A failed fetch keeps the
//! last good keys. Decides nothing itself: the core says what each outcome means.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Either, select};
use worker::{AbortController, Context, Delay, Env, Fetch, Method, Request, RequestInit};

use super::{KV_BINDING, now_ms};
use crate::core::Millis;
use crate::core::access::{Denial, TokenRules};
use crate::core::tokens::{Check, JWKS_MAX_AGE_MS, TokenVerifier};

/// KV key holding the latest JWKS document and when it was fetched.
const JWKS_KEY: &str = "jwks";
/// A JWKS fetch's timeout.
const JWKS_TIMEOUT_MS: u64 = 2000;

thread_local! {
    static VERIFIER: RefCell<Option<TokenVerifier>> = const { RefCell::new(None) };
}

fn with_verifier<T>(rules: &TokenRules, f: impl FnOnce(&mut TokenVerifier) -> T) -> T {
    VERIFIER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let verifier = slot.get_or_insert_with(|| TokenVerifier::new(Arc::new(rules.clone())));
        f(verifier)
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredJwks {
    fetched_at_ms: Millis,
    document: String,
}

/// Checks the request's bearer token for `method`: the caller's subject, or the refusal.
pub async fn authenticate(
    env: &Env,
    ctx: &Context,
    rules: &TokenRules,
    authorization: Option<&str>,
    method: &Method,
) -> Result<String, Denial> {
    let method = method.to_string();
    if with_verifier(rules, |v| v.needs_jwks()) {
        load_jwks(env, rules, false).await;
    }
    let first = with_verifier(rules, |v| v.check(authorization, &method, now_ms()));
    let result = match first {
        Ok(subject) => Ok(subject),
        Err(Check::Denied(denial)) => Err(denial),
        Err(Check::UnknownKey) => {
            if with_verifier(rules, |v| v.may_fetch_for_unknown_kid(now_ms())) {
                load_jwks(env, rules, true).await;
            }
            match with_verifier(rules, |v| v.check(authorization, &method, now_ms())) {
                Ok(subject) => Ok(subject),
                Err(Check::Denied(denial)) => Err(denial),
                Err(Check::UnknownKey) => Err(with_verifier(rules, |v| v.unknown_key_denial())),
            }
        }
    };
    if with_verifier(rules, |v| v.refresh_due(now_ms())) {
        let env = env.clone();
        let rules = rules.clone();
        ctx.wait_until(async move { load_jwks(&env, &rules, false).await });
    }
    result
}

/// Gets the JWKS into this isolate: KV's copy if fresh (and `force` is false), else the URL's
/// (then stored in KV). Failures are logged and leave the last good keys in place.
async fn load_jwks(env: &Env, rules: &TokenRules, force: bool) {
    let Some(url) = rules.jwks_url.as_deref() else {
        return;
    };
    let kv = env.kv(KV_BINDING).ok();
    if !force && let Some(kv) = &kv {
        let stored = kv.get(JWKS_KEY).json::<StoredJwks>().await.ok().flatten();
        if let Some(stored) = stored
            && now_ms().saturating_sub(stored.fetched_at_ms) < JWKS_MAX_AGE_MS
            && with_verifier(rules, |v| {
                v.set_jwks(stored.document.as_bytes(), stored.fetched_at_ms)
            })
            .is_ok()
        {
            return;
        }
    }
    let fetched_at = now_ms();
    let Some(document) = fetch_jwks(url).await else {
        log_failure("fetch", url);
        return;
    };
    if let Err(e) = with_verifier(rules, |v| v.set_jwks(document.as_bytes(), fetched_at)) {
        log_failure(e.code(), url);
        return;
    }
    if let Some(kv) = kv {
        let stored = StoredJwks {
            fetched_at_ms: fetched_at,
            document,
        };
        if let Ok(put) = kv.put(JWKS_KEY, stored) {
            let _ = put.execute().await;
        }
    }
}

async fn fetch_jwks(url: &str) -> Option<String> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let work = async {
        let mut init = RequestInit::new();
        init.with_method(Method::Get);
        let request = Request::new_with_init(url, &init).ok()?;
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .ok()?;
        if response.status_code() != 200 {
            return None;
        }
        response.text().await.ok()
    };
    futures_util::pin_mut!(work);
    let timer = Delay::from(Duration::from_millis(JWKS_TIMEOUT_MS));
    match select(work, timer).await {
        Either::Left((document, _)) => document,
        Either::Right(_) => {
            controller.abort();
            None
        }
    }
}

fn log_failure(reason: &str, url: &str) {
    worker::console_error!(
        "{}",
        serde_json::json!({"event": "jwks_unavailable", "reason": reason, "url": url})
    );
}
