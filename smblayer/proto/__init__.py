"""Sans-I/O SMB codecs: framing, headers, negotiate, echo, credits, NTSTATUS.

Nothing in this package imports socket, threading or time: it turns bytes
into values and values into bytes, so it can be tested without a network and
reused by any I/O model.
"""
