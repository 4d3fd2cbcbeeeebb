"""daxd: a self-hosted DynamoDB Accelerator.

A write-through, eventually consistent cache in front of any DynamoDB endpoint,
reachable over DynamoDB's own JSON API and over the DAX wire protocol.
"""

__version__ = "0.1.0"
