"""DAX wire protocol front end: sans-IO codec (see docs/protocol.md).

The server uses:

* :class:`DaxConnection` - bytes in, events out;
* :func:`to_operation` - a data-plane :class:`MethodCall` to a DynamoDB operation (a plain
  getItem comes as :class:`PlainGetItem` bytes: :func:`decode_plain_get_item` makes it a MethodCall)
  (raises :class:`NeedSchema` until the tables' key schemas are known);
* :func:`encode_response`, :func:`encode_error` and the control-reply encoders;
* :class:`AttributeListTable` and :class:`KeySchema`.
"""

from daxd.frontends.dax.attrs import AttributeListTable, UnknownAttributeList
from daxd.frontends.dax.codec import DEFAULT_MAX_FRAME_SIZE, DaxConnection, State, decode_plain_get_item
from daxd.frontends.dax.errors import encode_error, error_codes
from daxd.frontends.dax.events import (
    NEED_DATA,
    AuthorizeConnection,
    ConnectionClosed,
    DefineAttributeList,
    DefineAttributeListId,
    DefineKeySchema,
    Endpoints,
    Event,
    MethodCall,
    PlainGetItem,
    Preamble,
)
from daxd.frontends.dax.keys import KeySchema
from daxd.frontends.dax.operations import NeedSchema, Operation, RequestContext, required_tables, to_operation
from daxd.frontends.dax.responses import (
    Endpoint,
    encode_attribute_list,
    encode_attribute_list_id,
    encode_endpoints,
    encode_key_schema,
    encode_response,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "NEED_DATA",
    "AttributeListTable",
    "AuthorizeConnection",
    "ConnectionClosed",
    "DaxConnection",
    "DefineAttributeList",
    "DefineAttributeListId",
    "DefineKeySchema",
    "Endpoint",
    "Endpoints",
    "Event",
    "KeySchema",
    "MethodCall",
    "NeedSchema",
    "Operation",
    "PlainGetItem",
    "Preamble",
    "RequestContext",
    "State",
    "UnknownAttributeList",
    "decode_plain_get_item",
    "encode_attribute_list",
    "encode_attribute_list_id",
    "encode_endpoints",
    "encode_error",
    "encode_key_schema",
    "encode_response",
    "error_codes",
    "required_tables",
    "to_operation",
]
