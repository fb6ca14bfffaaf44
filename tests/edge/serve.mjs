// Serves the built edge Worker from workerd through Miniflare's API, without wrangler dev's
// proxy and request logging in front of it: the closest local stand-in for the Workers runtime
// when measuring what the edge itself adds. Env: EDGE_VARS (JSON object of vars), PORT.
// Prints "ready <url>" and runs until SIGTERM/SIGINT.
import { Miniflare } from "miniflare";
import { workerOptions } from "./worker_options.mjs";

const mf = new Miniflare(workerOptions({ host: "127.0.0.1", port: Number(process.env.PORT) }));
const url = await mf.ready;
console.log(`ready ${url}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
