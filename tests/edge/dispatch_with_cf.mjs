// Drives the built edge Worker in workerd through Miniflare's API, which (unlike `wrangler dev`)
// lets each request carry its own `request.cf` (client coordinates, continent).
// Input (env): EDGE_VARS = JSON object of Worker vars; CASES = JSON array of
// {"path", "cf", "ip"?}; prints a JSON array of {"status", "served_by", "attempts"}.
import { Miniflare } from "miniflare";
import { workerOptions } from "./worker_options.mjs";

const mf = new Miniflare(workerOptions());
try {
  const results = [];
  for (const c of JSON.parse(process.env.CASES)) {
    const headers = c.ip ? { "cf-connecting-ip": c.ip } : {};
    const response = await mf.dispatchFetch(`http://edge.test${c.path}`, { cf: c.cf, headers });
    await response.arrayBuffer();
    results.push({
      status: response.status,
      served_by: response.headers.get("x-served-by"),
      attempts: response.headers.get("x-edge-attempts"),
    });
  }
  console.log(JSON.stringify(results));
} finally {
  await mf.dispose();
}
