-- wrk load: DynamoDB JSON GetItem over a rotating set of keys.
-- Environment: TABLE (table name), NKEYS (keys pk=user#000000.. with sk=0).
-- DynamoDB Local checks only that Authorization names a credential scope.
local table_name = os.getenv("TABLE") or "PerfTab"
local nkeys = tonumber(os.getenv("NKEYS") or "1000")
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.GetItem"
wrk.headers["X-Amz-Date"] = "20260101T000000Z"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=daxdtest/20260101/us-east-1/dynamodb/aws4_request, "
  .. "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" .. string.rep("0", 64)

request = function()
  counter = counter + 1
  local body = string.format('{"TableName":"%s","Key":{"pk":{"S":"user#%06d"},"sk":{"N":"0"}}}',
                             table_name, counter % nkeys)
  return wrk.format(nil, "/", nil, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
