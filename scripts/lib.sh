# Shared settings for the project's scripts. Sourced, never run.
# Tools live in a user-level cache so a second run is quick; nothing depends on it existing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TANDEM_CACHE:-$HOME/.cache/tandem}"
STATE="$ROOT/.state"
mkdir -p "$CACHE" "$STATE"

# Pinned tool versions (see ../shared/PLATFORM.md for why these).
WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=0.2.130
CFN_GUARD_VERSION=3.2.1

log() { printf '[tandem] %s\n' "$*" >&2; }

# Offline settings for wrangler: no metrics, no banner, config kept inside the repo's state dir.
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false WRANGLER_HIDE_BANNER=true
export CLOUDFLARE_CF_FETCH_ENABLED=false XDG_CONFIG_HOME="$STATE/xdg"
# Local AWS SDK settings: dummy credentials, never the EC2 metadata address.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_EC2_METADATA_DISABLED=true

tool_root() { echo "$CACHE/tools/$1-$2"; }
export WASM_BINDGEN_BIN="$(tool_root wasm-bindgen-cli "$WASM_BINDGEN_VERSION")/bin/wasm-bindgen"
export WORKER_BUILD_BIN="$(tool_root worker-build "$WORKER_BUILD_VERSION")/bin/worker-build"
export CFN_GUARD_BIN="$(tool_root cfn-guard "$CFN_GUARD_VERSION")/bin/cfn-guard"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export VENV="$CACHE/venv-$(cat "$ROOT/scripts/requirements.txt" | sha256sum | cut -c1-12)"
export CHECKOV_VENV="$CACHE/checkov-$(cat "$ROOT/scripts/requirements-checkov.txt" | sha256sum | cut -c1-12)"
