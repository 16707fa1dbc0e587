"""Sans-I/O SMB codecs: framing, headers, negotiate, echo, credits, NTSTATUS,
and (``smblayer.proto.commands``) the public request/response codecs of the
SMB2 commands a protocol package may need (CREATE, CLOSE, IOCTL/FSCTL,
CHANGE_NOTIFY, QUERY_INFO, SET_INFO, LOCK, QUERY_DIRECTORY).

Nothing in this package imports socket, threading or time: it turns bytes
into values and values into bytes, so it can be tested without a network and
reused by any I/O model.
"""
