// The official JavaScript DAX client (@amazon-dax-sdk/client-dax 3.1.0), unmodified, against daxd.
// Usage: node dax_client.js <endpoint> <range-table> <hash-table> [key-id] [secret]
// Prints one JSON object: {name: result-or-{error: code}} for each step, for the pytest side to check.
'use strict';
const { Dax, daxPaginateQuery } = require('@amazon-dax-sdk/client-dax');

const [endpoint, table, hashTable, keyId = 'AKIDEXAMPLE', secret = 'secret'] = process.argv.slice(2);
const dax = new Dax({
  endpoints: [endpoint], region: 'us-east-1', skipHostnameVerification: true,
  credentials: { accessKeyId: keyId, secretAccessKey: secret },
});
const key = (pk, sk) => ({ pk: { S: pk }, sk: { N: String(sk) } });
const results = {};

async function step(name, fn) {
  try {
    results[name] = await fn();
  } catch (err) {
    const reasons = err.cancellationReasons || err.CancellationReasons;
    results[name] = { error: err.code || err.name, message: err.message,
      reasons: reasons ? reasons.map((r) => r.Code) : undefined };
  }
}

async function main() {
  await step('put', () => dax.putItem({ TableName: table, Item: { ...key('js', 1), n: { N: '1.5' },
    s: { S: 'x' }, big: { N: '123456789012345678901234567890' }, l: { L: [{ S: 'a' }] },
    m: { M: { k: { BOOL: true } } }, ss: { SS: ['a', 'b'] } } }));
  await step('get', async () => (await dax.getItem({ TableName: table, Key: key('js', 1) })).Item);
  await step('get_again', async () => (await dax.getItem({ TableName: table, Key: key('js', 1) })).Item);
  await step('get_missing', async () => (await dax.getItem({ TableName: table, Key: key('nope', 1) })).Item || null);
  await step('get_projected', async () => (await dax.getItem({ TableName: table, Key: key('js', 1),
    ProjectionExpression: '#s, pk', ExpressionAttributeNames: { '#s': 's' }, ConsistentRead: true })).Item);
  await step('update', async () => (await dax.updateItem({ TableName: table, Key: key('js', 1),
    UpdateExpression: 'SET n = n + :one ADD c :one', ExpressionAttributeValues: { ':one': { N: '1' } },
    ReturnValues: 'UPDATED_NEW' })).Attributes);
  await step('put_all_old', async () => (await dax.putItem({ TableName: table,
    Item: { ...key('js', 2), v: { S: 'new' } }, ReturnValues: 'ALL_OLD', ReturnConsumedCapacity: 'TOTAL' })));
  for (let sk = 10; sk < 15; sk++) {
    await dax.putItem({ TableName: table, Item: { ...key('jsq', sk), g: { S: 'jsgrp' } } });
  }
  await step('query_pages', async () => {
    const pages = [];
    for await (const page of daxPaginateQuery({ client: dax, pageSize: 2 }, { TableName: table,
      KeyConditionExpression: 'pk = :p AND sk > :lo', ExpressionAttributeValues: { ':p': { S: 'jsq' }, ':lo': { N: '10' } } })) {
      pages.push(page.Items.map((i) => Number(i.sk.N)));
    }
    return pages;
  });
  await step('query_index', async () => (await dax.query({ TableName: table, IndexName: 'by-g',
    KeyConditionExpression: 'g = :g', ExpressionAttributeValues: { ':g': { S: 'jsgrp' } }, Limit: 10 })).Count);
  await step('scan_filter', async () => (await dax.scan({ TableName: table, FilterExpression: 'pk = :p',
    ExpressionAttributeValues: { ':p': { S: 'jsq' } }, Select: 'COUNT' })).Count);
  await step('batch_write', async () => (await dax.batchWriteItem({ RequestItems: {
    [hashTable]: [{ PutRequest: { Item: { pk: { S: 'jsb1' }, v: { N: '1' } } } },
      { PutRequest: { Item: { pk: { S: 'jsb2' }, v: { N: '2' } } } }] } })).UnprocessedItems);
  await step('batch_get', async () => (await dax.batchGetItem({ RequestItems: {
    [hashTable]: { Keys: [{ pk: { S: 'jsb1' } }, { pk: { S: 'jsb2' } }, { pk: { S: 'absent' } }] } } }))
    .Responses[hashTable].map((i) => i.v.N).sort());
  await step('transact_write', () => dax.transactWriteItems({ TransactItems: [
    { Put: { TableName: hashTable, Item: { pk: { S: 'jst' }, v: { N: '1' } } } },
    { Delete: { TableName: hashTable, Key: { pk: { S: 'jsb1' } } } }] }));
  await step('transact_get', async () => (await dax.transactGetItems({ TransactItems: [
    { Get: { TableName: hashTable, Key: { pk: { S: 'jst' } } } },
    { Get: { TableName: hashTable, Key: { pk: { S: 'jsb1' } } } }] })).Responses.map((r) => r.Item || null));
  await step('conditional_failed', () => dax.putItem({ TableName: table, Item: key('js', 1),
    ConditionExpression: 'attribute_not_exists(pk)' }));
  await step('transaction_canceled', () => dax.transactWriteItems({ TransactItems: [
    { Put: { TableName: hashTable, Item: { pk: { S: 'jst2' } } } },
    { ConditionCheck: { TableName: hashTable, Key: { pk: { S: 'jst' } }, ConditionExpression: 'attribute_not_exists(pk)' } }] }));
  await step('validation', () => dax.updateItem({ TableName: table, Key: key('js', 1),
    UpdateExpression: 'SET pk = :v', ExpressionAttributeValues: { ':v': { S: 'x' } } }));
  await step('not_found', () => dax.getItem({ TableName: 'no-such-table', Key: { pk: { S: 'x' } } }));
  await step('delete', async () => (await dax.deleteItem({ TableName: table, Key: key('js', 2),
    ReturnValues: 'ALL_OLD' })).Attributes);
}

const timer = setTimeout(() => { console.log(JSON.stringify({ timeout: true, ...results })); process.exit(2); }, 40000);
main().then(() => {
  clearTimeout(timer);
  console.log(JSON.stringify(results));
  dax.shutdown();
  process.exit(0);
}, (err) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ fatal: String(err && err.stack), ...results }));
  process.exit(1);
});
