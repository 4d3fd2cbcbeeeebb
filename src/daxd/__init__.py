"""daxd: a self-hosted DynamoDB Accelerator.

A write-through, eventually consistent cache in front of any DynamoDB endpoint,
reachable over DynamoDB's own JSON API, over the DAX wire protocol, and
in-process through :func:`accelerate`.
"""

from typing import Any

__version__ = "0.1.0"


def accelerate(target: Any, **settings: Any) -> Any:
    """Wrap a boto3 DynamoDB client or resource with an in-process cache.

    See :func:`daxd.inprocess.accelerate` for the settings. Imported on first use
    so ``import daxd`` (the server's entry point) does not load the in-process code.
    """
    from daxd.inprocess import accelerate as _accelerate
    return _accelerate(target, **settings)
