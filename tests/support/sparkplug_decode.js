// The cross-check decoder: Eclipse Tahu's JavaScript `sparkplug-payload` (npm) decodes every payload the host saw.
// Input: one hex payload per line on stdin. Output: one JSON line each: {seq, metrics: [{name, alias, type, value}]}
// (64-bit numbers as strings), or {error}.
const path = process.env.WATCHPOST_SPARKPLUG_PAYLOAD || "/var/cache/watchpost/npm/node_modules/sparkplug-payload";
const sp = require(path).get("spBv1.0");
const lines = require("fs").readFileSync(0, "utf8").split("\n").filter((l) => l.length > 0);
const big = (v) => (v !== null && typeof v === "object" && "low" in v && "high" in v ? v.toString() : v);
for (const hex of lines) {
  try {
    const p = sp.decodePayload(Buffer.from(hex, "hex"));
    const metrics = (p.metrics || []).map((m) => ({
      name: m.name === undefined ? null : m.name,
      alias: m.alias === undefined ? null : big(m.alias).toString(),
      type: m.type,
      value: m.value === undefined || m.value === null ? null : big(m.value),
    }));
    console.log(JSON.stringify({ seq: p.seq === undefined ? null : big(p.seq).toString(), metrics }));
  } catch (e) {
    console.log(JSON.stringify({ error: String(e) }));
  }
}
