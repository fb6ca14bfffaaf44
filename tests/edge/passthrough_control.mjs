// The soak's control (tests/harness/soak.py): a trivial JavaScript Worker that forwards every
// request unchanged to one origin (the var ORIGIN) and returns its answer unchanged. No routing,
// no Wasm, no state: what workerd's own memory does under the same load, for comparison with the
// edge Worker's.
export default {
  async fetch(request, env) {
    const incoming = new URL(request.url);
    const target = new URL(incoming.pathname + incoming.search, env.ORIGIN);
    return fetch(new Request(target, request));
  },
};
