// The official JavaScript DAX client (@amazon-dax-sdk/client-dax), unmodified, running a put+get loop
// against a daxd cluster until its stdin closes.
// Usage: node put_get_loop.js <table> <cluster-update-interval-ms> <host:port> [<host:port> ...]
// Prints one JSON line every 100 ms and a last one at the end:
//   {ok, failed, wrong, failures: [[epoch ms, error code], ...] (the first 200)}
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
let running = true;
const report = () => process.stdout.write(JSON.stringify(counts) + '\n');

process.stdin.on('data', () => {});
process.stdin.on('end', () => { running = false; });

async function main() {
  const ticker = setInterval(report, 100);
  for (let i = 0; running; i++) {
    const key = { pk: { S: `js-${process.pid}-${i}` }, sk: { N: '1' } };
    try {
      await dax.putItem({ TableName: table, Item: { ...key, v: { N: String(i) } } });
      const got = await dax.getItem({ TableName: table, Key: key });
      if (got.Item && got.Item.v.N === String(i)) {
        counts.ok++;
      } else {
        counts.wrong++;
      }
    } catch (err) {
      counts.failed++;
      if (counts.failures.length < 200) {
        counts.failures.push([Date.now(), String(err.code || err.name || err)]);
      }
    }
  }
  clearInterval(ticker);
  report();
  dax.shutdown();
  process.exit(0);
}

main().catch((err) => { process.stdout.write(JSON.stringify({ fatal: String(err) }) + '\n'); process.exit(1); });
