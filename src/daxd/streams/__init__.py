"""DynamoDB Streams: every change to a cached table reaches the cache, whoever made it.

Split along its seams: :mod:`.client` (the Streams API over the upstream
client), :mod:`.planner` (which shards to read and from where; pure),
:mod:`.leasing` (which shards this node may read when nodes share them; pure),
:mod:`.stats` (counts and /metrics) and :mod:`.tailer` (the asyncio loop that
reads shards and hands records to the Accelerator). A single node, a cluster
and the in-process accelerator all use it.
"""
