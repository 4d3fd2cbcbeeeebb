// The official JavaScript DAX client (@amazon-dax-sdk/client-dax), unmodified, running a put+get loop
// against a daxd cluster until its stdin closes.
// Usage: node put_get_loop.js <table> <cluster-update-interval-ms> <host:port> [<host:port> ...]
// Prints one JSON line every 100 ms and a last one at the end:
//   {ok, failed, wrong, failures: [[epoch ms, error code], ...] (the first 200)}
// (a call left unanswered is dated when it was sent, as it was sent before the failure showed).
// A pair is "failed" when the put or the get threw, "wrong" when the get did not return the value just put
// (each pair writes a new key, so any node must answer it).
'use strict';
const { Dax } = require('@amazon-dax-sdk/client-dax');

const [table, interval, ...endpoints] = process.argv.slice(2);
const dax = new Dax({
  endpoints: endpoints.map((e) => `dax://${e}`), region: 'us-east-1', skipHostnameVerification: true,
  credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
  clusterUpdateInterval: Number(interval),
});
const counts = { ok: 0, failed: 0, wrong: 0, failures: [] };

// The client (3.1.0) can leave a call unanswered forever: its connection pool hands out an idle connection
// that the server has since closed (a SIGKILLed node's), and a request written to a destroyed socket gets
// neither an answer, nor an error, nor its requestTimeout. Each call is bounded here, so such a request
// counts as one failed pair, at the time it was sent, instead of stalling the loop.
const CALL_DEADLINE_MS = 5000;
class Unanswered extends Error {
  constructor(sentAt) {
    super(`no answer within ${CALL_DEADLINE_MS} ms`);
    this.code = 'Unanswered';
    this.sentAt = sentAt;
  }
}
function bounded(call) {
  const sentAt = Date.now();
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Unanswered(sentAt)), CALL_DEADLINE_MS);
  });
  return Promise.race([call, deadline]).finally(() => clearTimeout(timer));
}
let running = true;
const report = () => process.stdout.write(JSON.stringify(counts) + '\n');

process.stdin.on('data', () => {});
process.stdin.on('end', () => { running = false; });

async function main() {
  const ticker = setInterval(report, 100);
  for (let i = 0; running; i++) {
    const key = { pk: { S: `js-${process.pid}-${i}` }, sk: { N: '1' } };
    try {
      await bounded(dax.putItem({ TableName: table, Item: { ...key, v: { N: String(i) } } }));
      const got = await bounded(dax.getItem({ TableName: table, Key: key }));
      if (got.Item && got.Item.v.N === String(i)) {
        counts.ok++;
      } else {
        counts.wrong++;
      }
    } catch (err) {
      counts.failed++;
      if (counts.failures.length < 200) {
        counts.failures.push([err.sentAt || Date.now(), String(err.code || err.name || err)]);
      }
    }
  }
  clearInterval(ticker);
  report();
  dax.shutdown();
  process.exit(0);
}

main().catch((err) => { process.stdout.write(JSON.stringify({ fatal: String(err) }) + '\n'); process.exit(1); });
