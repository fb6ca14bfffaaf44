// Serves the built edge Worker from workerd through Miniflare's API, without wrangler dev's
// proxy and request logging in front of it: the closest local stand-in for the Workers runtime
// when measuring what the edge itself adds. Env: EDGE_VARS (JSON object of vars), PORT.
// Prints "ready <url>" and runs until SIGTERM/SIGINT.
import { Miniflare } from "miniflare";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const build = path.join(root, "edge", "build");
const mf = new Miniflare({
  modulesRoot: build,
  modules: [
    { type: "ESModule", path: path.join(build, "index.js") },
    { type: "CompiledWasm", path: path.join(build, "index_bg.wasm") },
  ],
  compatibilityDate: "2026-04-26",
  bindings: JSON.parse(process.env.EDGE_VARS),
  kvNamespaces: ["EDGE_STATE"],
  host: "127.0.0.1",
  port: Number(process.env.PORT),
  cf: false,
});
const url = await mf.ready;
console.log(`ready ${url}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
