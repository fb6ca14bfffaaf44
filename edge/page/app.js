// The page's script (see edge/src/worker/page.rs).
