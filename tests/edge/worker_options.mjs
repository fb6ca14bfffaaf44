// Miniflare options that load the built edge Worker (edge/build/) with the vars in EDGE_VARS
// (a JSON object) and its KV namespace: shared by the scripts that run it outside wrangler dev.
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const build = path.join(root, "edge", "build");

export function workerOptions(extra = {}) {
  return {
    modulesRoot: build,
    modules: [
      { type: "ESModule", path: path.join(build, "index.js") },
      { type: "CompiledWasm", path: path.join(build, "index_bg.wasm") },
    ],
    compatibilityDate: "2026-04-26",
    bindings: JSON.parse(process.env.EDGE_VARS),
    kvNamespaces: ["EDGE_STATE"],
    cf: false,
    ...extra,
  };
}
