"""Tree.copy: server-side copy (FSCTL_SRV_REQUEST_RESUME_KEY +
FSCTL_SRV_COPYCHUNK_WRITE, [MS-SMB2] 3.2.4.20.2), with read + write
through the client as the fallback.

Built only on the public extension API (``Tree.open_handle``,
``Tree.ioctl`` / ``Tree.ioctl_task``, the IOCTL codecs of
``smblayer.proto.commands``).  The chunk limits start at 16 chunks of 1 MiB
per request; a server with smaller limits answers STATUS_INVALID_PARAMETER
with its own (MaxChunks, MaxChunkSize, MaxTotalSize), which are then used.
A few requests are kept in flight at once.
"""
from __future__ import annotations

import logging
import shutil
from concurrent.futures import Future
from typing import List, Tuple

from ..errors import SmbStatusError
from ..proto.commands import (FSCTL_SRV_COPYCHUNK_WRITE, FSCTL_SRV_REQUEST_RESUME_KEY,
                              copychunk_input, parse_copychunk_output, parse_ioctl_response,
                              parse_resume_key)
from ..proto.status import NtStatus
from .ops import (FILE_NON_DIRECTORY_FILE, FILE_OVERWRITE_IF, FILE_READ_ATTRIBUTES,
                  FILE_READ_DATA, FILE_WRITE_DATA, SYNCHRONIZE)

log = logging.getLogger("smblayer")

MAX_CHUNKS = 16
MAX_CHUNK_SIZE = 1 << 20
MAX_TOTAL = 16 << 20
IN_FLIGHT = 4
_UNSUPPORTED = frozenset({NtStatus.NOT_SUPPORTED, NtStatus.INVALID_DEVICE_REQUEST,
                          NtStatus.NOT_IMPLEMENTED, NtStatus.INVALID_INFO_CLASS})


def copy_file(src_tree, src, dst_tree, dst) -> int:
    """Copy ``src`` on ``src_tree`` to ``dst`` on ``dst_tree``; returns
    the bytes copied.  Server-side when both trees are on one client with
    SMB2+, otherwise (or if the server refuses) read + write."""
    if src_tree.client is dst_tree.client and not src_tree.client.dialect.is_smb1:
        try:
            return _server_side(src_tree, src, dst_tree, dst)
        except SmbStatusError as exc:
            # A resume key is only good within its session on some servers.
            other_session = src_tree.session is not dst_tree.session and \
                exc.status == NtStatus.ACCESS_DENIED
            if exc.status not in _UNSUPPORTED and not other_session:
                raise
            log.info("smblayer: server-side copy refused (%s); copying through the client",
                     exc)
    return _through_client(src_tree, src, dst_tree, dst)


def _through_client(src_tree, src, dst_tree, dst) -> int:
    with src_tree.open(src, "rb") as fsrc, dst_tree.open(dst, "wb") as fdst:
        shutil.copyfileobj(fsrc, fdst, 1 << 20)
        return fdst.tell()


def _server_side(src_tree, src, dst_tree, dst) -> int:
    source = src_tree.open_handle(src, access=FILE_READ_DATA | FILE_READ_ATTRIBUTES |
                                  SYNCHRONIZE, create_options=FILE_NON_DIRECTORY_FILE)
    try:
        key = parse_resume_key(src_tree.ioctl(source, FSCTL_SRV_REQUEST_RESUME_KEY,
                                              max_output=32))
        size = source.info.size
        target = dst_tree.open_handle(
            dst, access=FILE_READ_DATA | FILE_WRITE_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
            disposition=FILE_OVERWRITE_IF, create_options=FILE_NON_DIRECTORY_FILE)
        try:
            return _copy_chunks(dst_tree, target, key, size)
        finally:
            dst_tree.close_handle(target)
    finally:
        src_tree.close_handle(source)


def _plan(offset: int, size: int, limits: Tuple[int, int, int]) -> List[Tuple[int, int, int]]:
    """The chunks of one request starting at ``offset``."""
    max_chunks, max_chunk, max_total = limits
    chunks, total = [], 0
    while offset < size and len(chunks) < max_chunks and total < max_total:
        n = min(max_chunk, size - offset, max_total - total)
        chunks.append((offset, offset, n))
        offset += n
        total += n
    return chunks


def _copy_chunks(tree, target, key: bytes, size: int) -> int:
    client = tree.client
    limits = (MAX_CHUNKS, MAX_CHUNK_SIZE, MAX_TOTAL)
    offset = 0
    pending: List[Tuple[Future, int, int, tuple]] = []    # (future, offset, length, limits)
    retry_from = None

    def send(start: int) -> int:
        chunks = _plan(start, size, limits)
        length = sum(c[2] for c in chunks)
        task = tree.ioctl_task(target, FSCTL_SRV_COPYCHUNK_WRITE, copychunk_input(key, chunks),
                               max_output=12)
        task.ok_statuses = frozenset({0, NtStatus.INVALID_PARAMETER})
        pending.append((client.run_task_async(task), start, length, limits))
        return start + length

    try:
        while offset < size or pending:
            while offset < size and len(pending) < IN_FLIGHT and retry_from is None:
                offset = send(offset)
            future, start, length, sent_with = pending.pop(0)
            reply = future.result()
            result = parse_copychunk_output(parse_ioctl_response(reply).output)
            if reply.status == NtStatus.INVALID_PARAMETER:
                new = (result.chunks_written, result.chunk_bytes_written,
                       result.total_bytes_written)
                if sent_with == limits:          # not already adjusted by an earlier answer
                    if min(new) <= 0 or new == limits:
                        raise SmbStatusError(reply.status, "IOCTL",
                                             message="copy chunk rejected")
                    log.debug("smblayer: server copy-chunk limits %s", new)
                    limits = new
                retry_from = start if retry_from is None else min(retry_from, start)
            elif result.total_bytes_written != length:
                # A short copy: continue after what the server wrote.
                retry_from = start + result.total_bytes_written if retry_from is None else \
                    min(retry_from, start + result.total_bytes_written)
                if result.total_bytes_written == 0:
                    raise SmbStatusError(NtStatus.UNSUCCESSFUL, "IOCTL",
                                         message="server-side copy made no progress")
            if retry_from is not None and not pending:
                offset, retry_from = retry_from, None
    finally:
        for future, *_rest in pending:
            future.cancel()
    return size
