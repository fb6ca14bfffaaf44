//! Request ids and edge-made idempotency keys, from the platform's CSPRNG
//! (`crypto.getRandomValues`), never `Math.random`: an id another client could guess would let it
//! collide with, or replay, someone else's create.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buffer: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// 128 random bits as 32 hex digits.
pub fn request_id() -> String {
    let mut bytes = [0u8; 16];
    if get_random_values(&mut bytes).is_err() {
        // workerd always has crypto; if it ever did not, an id must still be unique enough to
        // tell log lines apart, and keys fall back to the time and a counter.
        return fallback_id();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fallback_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:016x}{:016x}",
        super::now_ms(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
