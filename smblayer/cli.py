"""The ``smblayer`` command line (``python -m smblayer``).

    smblayer put LOCAL //host[:port]/share/path      (LOCAL "-" = stdin)
    smblayer get //host[:port]/share/path LOCAL      (LOCAL "-" = stdout)
    smblayer ls|cat|stat|rm|mkdir|rmdir //host[:port]/share/path
    smblayer mv //host/share/old //host/share/new    (or a bare new path)
    smblayer echo //host[:port]
    smblayer bench //host[:port]/share [--size 64M] [--json]

URLs may also be written ``smb://host[:port]/share/path``.  Credentials come
from ``-U``/``--password`` or ``SMB_USER``/``SMB_PASSWORD`` (the password is
asked for on a terminal when missing; it is never printed or logged).

Exit status: 0 success, 1 SMB or I/O error (one line on stderr:
``smblayer: <command>: <error>``), 2 usage error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import json
import logging
import mmap
import os
import posixpath
import re
import stat
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from . import fs
from ._progress import Progress, format_bytes
from .config import Dialect, DialectRange, TimeoutPolicy
from .errors import SmbAuthError, SmbError, SmbStatusError
from .proto.status import status_name
from .registry import get_client

log = logging.getLogger("smblayer")

PROG = "smblayer"
DEFAULT_PORT = 445
CHUNK = 16 * 1024 * 1024          # bytes per read()/write() call on transfers
PROGRESS_MIN = 1024 * 1024        # no progress bar below this size


class UsageError(Exception):
    """Bad command-line input: exit status 2."""


# ---------------------------------------------------------------------------
# URLs, dialects, sizes


@dataclass(frozen=True)
class SmbUrl:
    """``//host[:port]/share/path`` split up; ``path`` uses "/" and has no
    leading slash ("" is the share root)."""

    host: str
    port: int
    share: str
    path: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == DEFAULT_PORT else f":{self.port}"
        text = f"//{host}{port}"
        if self.share:
            text += f"/{self.share}"
            if self.path:
                text += f"/{self.path}"
        return text

    def with_path(self, path: str) -> "SmbUrl":
        return SmbUrl(self.host, self.port, self.share, path.strip("/"))


_URL = re.compile(r"^(?:smb:)?//(?P<host>\[[^\]/]+\]|[^/:\[\]]+)(?::(?P<port>\d+))?"
                  r"(?:/(?P<rest>.*))?$", re.IGNORECASE)


def parse_url(text: str, need_share: bool = True) -> SmbUrl:
    """Parse ``//host[:port]/share/path`` or ``smb://...`` (backslashes are
    accepted too).  Raises UsageError."""
    m = _URL.match(text.replace("\\", "/"))
    if not m:
        raise UsageError(f"not an SMB URL (expected //host[:port]/share/path): {text!r}")
    host = m.group("host").strip("[]")
    port = int(m.group("port")) if m.group("port") else DEFAULT_PORT
    if not 0 < port < 65536:
        raise UsageError(f"bad port in {text!r}")
    rest = [p for p in (m.group("rest") or "").split("/") if p]
    if any(p in (".", "..") for p in rest):
        raise UsageError(f"'.' and '..' are not allowed in SMB paths: {text!r}")
    share = rest[0] if rest else ""
    if need_share and not share:
        raise UsageError(f"no share in {text!r} (expected //host[:port]/share/path)")
    return SmbUrl(host, port, share, "/".join(rest[1:]))


_DIALECT_NAMES = {
    "nt1": Dialect.SMB1, "smb1": Dialect.SMB1, "ntlm0.12": Dialect.SMB1, "1": Dialect.SMB1,
    "2.0.2": Dialect.SMB2_0_2, "2.02": Dialect.SMB2_0_2, "2": Dialect.SMB2_0_2,
    "2.0": Dialect.SMB2_0_2, "smb2": Dialect.SMB2_0_2, "smb2_02": Dialect.SMB2_0_2,
    "2.1": Dialect.SMB2_1, "2.10": Dialect.SMB2_1, "smb2_10": Dialect.SMB2_1,
    "3.0": Dialect.SMB3_0, "3": Dialect.SMB3_0, "3.00": Dialect.SMB3_0,
    "smb3": Dialect.SMB3_0, "smb3_00": Dialect.SMB3_0,
    "3.0.2": Dialect.SMB3_0_2, "3.02": Dialect.SMB3_0_2, "smb3_02": Dialect.SMB3_0_2,
    "3.1.1": Dialect.SMB3_1_1, "3.11": Dialect.SMB3_1_1, "smb3_11": Dialect.SMB3_1_1,
}


def parse_dialect(text: str) -> Dialect:
    """'3.1.1', '2.0.2', 'NT1', 'SMB3_11', 'SMB2_1' ... -> Dialect (argparse type)."""
    key = text.strip().lower().replace(" ", "")
    if key in _DIALECT_NAMES:
        return _DIALECT_NAMES[key]
    try:
        return Dialect[text.strip().upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown dialect {text!r} (use NT1, 2.0.2, 2.1, 3.0, 3.0.2 or 3.1.1)") from None


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64M', '4k', '1GiB', '1000' -> bytes (binary units; argparse type)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 4K, 64M, 1G)")
    scale = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * scale)


# ---------------------------------------------------------------------------
# connections


def _credentials(args) -> Tuple[str, Optional[str], Optional[str]]:
    """(username, password, domain) from the options, the environment or a
    prompt.  ``DOMAIN\\user`` and ``user@realm`` are accepted."""
    user = args.user or os.environ.get("SMB_USER") or getpass.getuser()
    domain = None
    if "\\" in user:
        domain, user = user.split("\\", 1)
    password = args.password
    if password is None:
        password = os.environ.get("SMB_PASSWORD")
    if password is None and sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass(f"Password for {user}: ")
    return user, password, domain


def _client_options(args) -> dict:
    """get_client() keyword arguments from the common options."""
    lo = args.dialect_min or Dialect.SMB2_0_2
    hi = args.dialect_max or Dialect.SMB3_1_1
    if args.dialect_min and not args.dialect_max and lo > hi:
        hi = lo
    if args.dialect_max and not args.dialect_min and hi < lo:
        lo = hi
    if lo > hi:
        raise UsageError(f"--dialect-min {lo} is above --dialect-max {hi}")
    mode = "hard" if args.hard else "soft"
    if args.timeout is not None:
        t = args.timeout
        timeouts = TimeoutPolicy(mode=mode, timeout=t, connect_timeout=t, soft_timeout=t,
                                 echo_interval=min(2.0, t))
    else:
        timeouts = TimeoutPolicy(mode=mode)
    return {"dialects": DialectRange(lo, hi), "timeouts": timeouts}


@contextlib.contextmanager
def open_tree(args, url: SmbUrl) -> Iterator["fs.Tree"]:
    """Session + tree for ``url`` (closed, logged off and released on exit)."""
    user, password, domain = _credentials(args)
    log.info("connecting to %s:%d as %s", url.host, url.port, user)
    tree = fs.connect(url.host, url.share, user, password, port=url.port,
                      encrypt=args.encrypt, domain=domain,
                      require_signing=True if args.sign else None, **_client_options(args))
    try:
        yield tree
    finally:
        try:
            tree.close()
        except SmbError as exc:
            log.debug("closing the tree failed: %s", exc)


def _smb_path(path: str) -> str:
    return path.strip("/")


# ---------------------------------------------------------------------------
# transfers


def _chunk_size(tree) -> int:
    """Bytes per read()/write() call: the Tree pipelines each call as many
    READ/WRITE requests in flight, so a call spans many of them."""
    io_size = max(getattr(tree, "io_read_size", 0), getattr(tree, "io_write_size", 0))
    return max(CHUNK, 16 * io_size)


class _DoubleBuffer:
    """Two buffers and one helper thread, so local disk I/O overlaps the
    network I/O of a transfer (the network side stays in the caller)."""

    def __init__(self, size: int):
        self._buffers = [memoryview(bytearray(size)), memoryview(bytearray(size))]
        self._turn = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="smblayer-local-io")
        self._pending = None

    def __enter__(self) -> "_DoubleBuffer":
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)

    def free(self) -> memoryview:
        """The buffer not being worked on by the helper."""
        buf = self._buffers[self._turn]
        self._turn ^= 1
        return buf

    def consume(self, view: memoryview, fn: Callable) -> None:
        """Run ``fn(view)`` on the helper after the previous one finished."""
        self.drain()
        self._pending = self._pool.submit(fn, view)

    def drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def produced(self, fill: Callable):
        """Yield views filled by ``fill(buf)`` on the helper, one ahead."""
        ahead = self._pool.submit(fill, self.free())
        while True:
            n = ahead.result()
            if not n:
                return
            current = self._buffers[self._turn ^ 1]
            ahead = self._pool.submit(fill, self.free())
            yield current[:n]


@contextlib.contextmanager
def _mapping(local, access: int) -> Iterator[Optional[memoryview]]:
    """A memoryview of ``local`` mapped with ``access``, or None where the
    file can't be mapped (a pipe, a terminal, an empty file)."""
    try:
        fd = local.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size == 0:
            raise OSError("not a mappable file")
        mapped = _mmap(fd, access)
    except (OSError, ValueError, io.UnsupportedOperation):
        yield None
        return
    view = memoryview(mapped)
    try:
        yield view
    finally:
        view.release()
        try:
            mapped.close()
        except BufferError:
            pass      # a request still holds a slice: unmapped when that goes


def _mmap(fd: int, access: int) -> mmap.mmap:
    """Map the whole file.  A file to read is pre-faulted where the platform
    can (one kernel pass instead of a fault per page); a file being filled
    is not (pre-faulting would zero every page before the first byte
    arrives instead of as the data comes)."""
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate and access == mmap.ACCESS_READ:
        return mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
    return mmap.mmap(fd, 0, access=access)


def _can_map_for_write(local) -> bool:
    try:
        return stat.S_ISREG(os.fstat(local.fileno()).st_mode) and local.readable() and \
            local.writable() and local.seekable()
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def _fill(read_into: Callable, view: memoryview) -> int:
    """readinto() until ``view`` is full or EOF (pipes return short reads)."""
    got = 0
    while got < len(view):
        n = read_into(view[got:])
        if not n:
            break
        got += n
    return got


def _write_all(f, view: memoryview) -> None:
    while len(view):
        n = f.write(view)
        if not n:
            raise OSError(5, "short write")
        view = view[n:]


def upload(tree, local: BinaryIO, path: str, size: Optional[int], label: str,
           progress: Optional[bool] = None) -> int:
    """Copy ``local`` to ``path`` in large pipelined writes; return the bytes.
    ``progress``: show a bar (default: on a terminal, for 1 MiB and more).
    A regular file is sent straight from a read-only mapping (no copy here);
    anything else is read by a helper thread while the network writes."""
    total = 0
    chunk = _chunk_size(tree)
    with tree.open(path, "wb", buffering=0) as f, \
            Progress(label, size, enabled=_progress_enabled(size, progress)) as bar:
        with _mapping(local, mmap.ACCESS_READ) as mapped:
            if mapped is not None:
                for start in range(0, len(mapped), chunk):
                    part = mapped[start:start + chunk]
                    _write_all(f, part)
                    total += len(part)
                    bar.update(len(part))
                    part.release()
                return total
        with _DoubleBuffer(chunk) as buffers:
            for view in buffers.produced(lambda buf: _fill(local.readinto, buf)):
                _write_all(f, view)
                total += len(view)
                bar.update(len(view))
        return total


def download(tree, path: str, local: BinaryIO, label: str,
             progress: Optional[bool] = None) -> int:
    """Copy ``path`` to ``local`` in large pipelined reads; return the bytes.
    Into a regular file opened for reading and writing the data is received
    straight into a shared mapping of it (no copy here); otherwise the local
    file is written by a helper thread while the network reads."""
    chunk = _chunk_size(tree)
    total = 0
    with tree.open(path, "rb", buffering=0) as f:
        size = f.handle.info.size
        if size and _can_map_for_write(local):
            local.truncate(size)
            with _mapping(local, mmap.ACCESS_WRITE) as mapped, \
                    Progress(label, size, enabled=_progress_enabled(size, progress)) as bar:
                while total < size:
                    part = mapped[total:total + chunk]
                    n = f.readinto(part)
                    part.release()
                    if not n:
                        break
                    total += n
                    bar.update(n)
            if total != size:             # the file shrank meanwhile
                local.truncate(total)
            return total
        with Progress(label, size, enabled=_progress_enabled(size, progress)) as bar, \
                _DoubleBuffer(chunk) as buffers:
            while True:
                buf = buffers.free()
                # Near the end ask for one request's worth only, so EOF is
                # confirmed without a burst of READs past it.
                ask = min(chunk, max(size - total, tree.io_read_size))
                n = f.readinto(buf[:ask])
                if not n:
                    buffers.drain()
                    return total
                buffers.consume(buf[:n], local.write)
                total += n
                bar.update(n)


def _progress_enabled(size: Optional[int], wanted: Optional[bool] = None) -> Optional[bool]:
    if wanted is not None:
        return wanted
    if size is not None and size < PROGRESS_MIN:
        return False
    return None        # Progress decides: stderr is a TTY


def _stdout() -> BinaryIO:
    return sys.stdout.buffer


# ---------------------------------------------------------------------------
# commands


def cmd_echo(args) -> int:
    url = parse_url(args.url, need_share=False)
    with get_client(url.host, url.port, **_client_options(args)) as client:
        times = []
        for i in range(args.count):
            if i:
                time.sleep(args.interval)
            rtt = client.echo()
            times.append(rtt)
            print(f"echo {url.host}:{url.port}: seq={i + 1} dialect={client.dialect} "
                  f"time={rtt * 1e6:.0f} µs", flush=True)
        if args.count > 1:
            us = sorted(t * 1e6 for t in times)
            print(f"{len(us)} echoes: min {us[0]:.0f} µs, median {statistics.median(us):.0f} µs, "
                  f"max {us[-1]:.0f} µs")
    return 0


def _entries(tree, path: str):
    """(name, stat) of each entry of directory ``path``."""
    scandir = getattr(tree, "scandir", None)
    if scandir is not None:
        for entry in scandir(path):
            yield entry.name, entry.stat()
        return
    for name in tree.listdir(path):
        yield name, tree.stat(posixpath.join(path, name) if path else name)


def _long_line(name: str, st) -> str:
    kind = "d" if st.is_dir else "-"
    mtime = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    return f"{kind} {st.st_size:>12} {mtime} {name}{'/' if st.is_dir else ''}"


def cmd_ls(args) -> int:
    if not parse_url(args.url, need_share=False).share:
        return cmd_ls_shares(args)
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        path = _smb_path(url.path)
        st = tree.stat(path) if path else None
        if st is not None and not st.is_dir:
            print(_long_line(posixpath.basename(path), st) if args.long
                  else posixpath.basename(path))
            return 0
        for name, est in sorted(_entries(tree, path), key=lambda e: e[0].lower()):
            if not args.all and name.startswith("."):
                continue
            print(_long_line(name, est) if args.long
                  else name + ("/" if est.is_dir else ""))
    return 0


def cmd_stat(args) -> int:
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        st = tree.stat(_smb_path(url.path))
        fmt = "%Y-%m-%d %H:%M:%S"
        print(f"  File: {url}")
        print(f"  Type: {'directory' if st.is_dir else 'regular file'}")
        print(f"  Size: {st.st_size}")
        print(f"  Attributes: 0x{st.st_file_attributes:08x}")
        for label, t in (("Access", st.st_atime), ("Modify", st.st_mtime),
                         ("Change", st.st_ctime), ("Birth", st.st_birthtime)):
            print(f"  {label}: {time.strftime(fmt, time.localtime(t)) if t else '-'}")
    return 0


def cmd_get(args) -> int:
    url = parse_url(args.source)
    path = _smb_path(url.path)
    if not path:
        raise UsageError(f"no file path in {args.source!r}")
    dest = args.dest if args.dest is not None else posixpath.basename(path)
    if dest != "-" and os.path.isdir(dest):
        dest = os.path.join(dest, posixpath.basename(path))
    with open_tree(args, url) as tree:
        label = posixpath.basename(path)
        if dest == "-":
            n = download(tree, path, _stdout(), label)
            _stdout().flush()
        else:
            try:
                with open(dest, "w+b") as local:       # readable too: it gets mapped
                    n = download(tree, path, local, label)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(dest)
                raise
    log.info("get: %d bytes from %s to %s", n, url, dest)
    return 0


def cmd_put(args) -> int:
    url = parse_url(args.dest)
    src = args.source
    with open_tree(args, url) as tree:
        path = _smb_path(url.path)
        if not path or url.path.endswith("/") or _is_remote_dir(tree, path):
            if src == "-":
                raise UsageError("put from stdin needs a remote file name")
            path = posixpath.join(path, os.path.basename(src)) if path else os.path.basename(src)
        label = posixpath.basename(path)
        if src == "-":
            n = upload(tree, sys.stdin.buffer, path, None, label)
        else:
            with open(src, "rb") as local:
                n = upload(tree, local, path, os.fstat(local.fileno()).st_size, label)
    log.info("put: %d bytes from %s to %s", n, src, url.with_path(path))
    return 0


def _is_remote_dir(tree, path: str) -> bool:
    try:
        return tree.stat(path).is_dir
    except FileNotFoundError:
        return False


def cmd_cat(args) -> int:
    urls = [parse_url(u) for u in args.urls]
    out = _stdout()
    for text, url in zip(args.urls, urls):
        args.current_url = text
        with open_tree(args, url) as tree:
            download(tree, _smb_path(url.path), out, "", progress=False)
        out.flush()
    return 0


def _each_remote(args) -> Iterator[Tuple["fs.Tree", str]]:
    """(tree, path) for each URL argument, each on its own connected tree."""
    for text in args.urls:
        args.current_url = text
        url = parse_url(text)
        with open_tree(args, url) as tree:
            yield tree, _smb_path(url.path)


def cmd_rm(args) -> int:
    for tree, path in _each_remote(args):
        tree.remove(path)
    return 0


def cmd_mkdir(args) -> int:
    for tree, path in _each_remote(args):
        if not args.parents:
            tree.mkdir(path)
            continue
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                tree.mkdir(sub)
            except FileExistsError:
                if not tree.stat(sub).is_dir:
                    raise
    return 0


def cmd_rmdir(args) -> int:
    for tree, path in _each_remote(args):
        tree.rmdir(path)
    return 0


def cmd_mv(args) -> int:
    url = parse_url(args.source)
    if args.dest.startswith(("//", "smb:", "\\\\")):
        dest = parse_url(args.dest)
        if (dest.host, dest.port, dest.share.lower()) != (url.host, url.port, url.share.lower()):
            raise UsageError("mv works within one share")
        new_path = dest.path
    else:
        new_path = args.dest.strip("/")
    with open_tree(args, url) as tree:
        tree.rename(_smb_path(url.path), _smb_path(new_path))
    return 0


# ---------------------------------------------------------------------------
# bench


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_echo_latency(client, count: int) -> Dict[str, float]:
    """``count`` sequential echoes: median and p99 in µs."""
    client.echo()
    times = []
    clock = time.perf_counter
    for _ in range(count):
        t0 = clock()
        client.echo()
        times.append((clock() - t0) * 1e6)
    return {"count": count, "median_us": statistics.median(times),
            "p99_us": _percentile(times, 0.99)}


def bench_echo_threads(client, threads: int, duration: float) -> Dict[str, float]:
    """``threads`` threads echoing on one client for ``duration`` s: ops/s."""
    stop = threading.Event()
    counts = [0] * threads
    errors: List[BaseException] = []
    start_barrier = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        start_barrier.wait()
        n = 0
        try:
            while not stop.is_set():
                client.echo()
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    start_barrier.wait()
    t0 = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {"threads": threads, "ops": sum(counts), "ops_per_s": sum(counts) / elapsed}


def bench_echo_async(client, in_flight: int, duration: float) -> Dict[str, float]:
    """Keep ``in_flight`` echo_async() requests outstanding for ``duration`` s."""
    done = 0
    pending = {client.echo_async() for _ in range(in_flight)}
    t0 = time.perf_counter()
    deadline = t0 + duration
    while time.perf_counter() < deadline:
        finished, pending = wait_futures(pending, return_when="FIRST_COMPLETED")
        for fut in finished:
            fut.result()
            done += 1
            pending.add(client.echo_async())
    for fut in pending:
        fut.result()
        done += 1
    elapsed = time.perf_counter() - t0
    return {"in_flight": in_flight, "ops": done, "ops_per_s": done / elapsed}


def bench_bulk(tree, path: str, size: int) -> Dict[str, float]:
    """Write then read a ``size``-byte file in large pipelined calls: MB/s."""
    chunk = _chunk_size(tree)
    block = memoryview(os.urandom(min(size, chunk)))
    t0 = time.perf_counter()
    with tree.open(path, "wb", buffering=0) as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            _write_all(f, block[:n])
            left -= n
    write_s = time.perf_counter() - t0
    buf = memoryview(bytearray(chunk))
    got = 0
    t0 = time.perf_counter()
    with tree.open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf[:min(chunk, max(size - got, tree.io_read_size))])
            if not n:
                break
            got += n
    read_s = time.perf_counter() - t0
    if got != size:
        raise SmbError(f"bench: read {got} bytes back, wrote {size}")
    return {"size": size, "write_MBps": size / write_s / 1e6, "read_MBps": size / read_s / 1e6,
            "write_s": write_s, "read_s": read_s}


def bench_small_files(tree, directory: str, count: int, size: int = 4096) -> Dict[str, float]:
    """Create+write ``size`` bytes+close ``count`` files: files/s."""
    data = os.urandom(size)
    names = [f"{directory}/f{i:05d}" for i in range(count)]
    t0 = time.perf_counter()
    for name in names:
        with tree.open(name, "wb") as f:
            f.write(data)
    elapsed = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in names:
        tree.write_bytes(name, data)          # one compound round trip on SMB2+
    elapsed_whole = time.perf_counter() - t0
    for name in names:
        tree.remove(name)
    return {"count": count, "size": size, "files_per_s": count / elapsed,
            "write_bytes_files_per_s": count / elapsed_whole}


def run_bench(tree, args) -> dict:
    client = tree.client
    base = _smb_path(parse_url(args.url).path)
    workdir = posixpath.join(base, f".smblayer-bench-{os.getpid()}") if base \
        else f".smblayer-bench-{os.getpid()}"
    result: dict = {"server": f"{client.host}:{client.port}", "dialect": str(client.dialect),
                    "encrypted": bool(getattr(tree, "encrypt", False) or args.encrypt)}
    result["echo_latency"] = bench_echo_latency(client, args.count)
    result["echo_threads"] = bench_echo_threads(client, args.threads, args.duration)
    result["echo_async"] = bench_echo_async(client, 64, args.duration)
    tree.mkdir(workdir)
    try:
        bulk_path = f"{workdir}/bulk.bin"
        result["bulk"] = bench_bulk(tree, bulk_path, args.size)
        tree.remove(bulk_path)
        result["small_files"] = bench_small_files(tree, workdir, args.files)
    finally:
        with contextlib.suppress(SmbError):
            for name in tree.listdir(workdir):
                tree.remove(f"{workdir}/{name}")
        with contextlib.suppress(SmbError):
            tree.rmdir(workdir)
    return result


def format_bench(r: dict) -> str:
    lat, thr, asy = r["echo_latency"], r["echo_threads"], r["echo_async"]
    bulk, small = r["bulk"], r["small_files"]
    rows = [
        ("server", f"{r['server']}  dialect {r['dialect']}"
                   f"{'  encrypted' if r['encrypted'] else ''}"),
        ("echo latency", f"median {lat['median_us']:.0f} µs  p99 {lat['p99_us']:.0f} µs"
                         f"  ({lat['count']} sequential)"),
        ("echo threads", f"{thr['ops_per_s']:,.0f} ops/s  ({thr['threads']} threads)"),
        ("echo async", f"{asy['ops_per_s']:,.0f} ops/s  ({asy['in_flight']} in flight)"),
        ("bulk write", f"{bulk['write_MBps']:.1f} MB/s  ({format_bytes(bulk['size'])})"),
        ("bulk read", f"{bulk['read_MBps']:.1f} MB/s  ({format_bytes(bulk['size'])})"),
        ("small files", f"{small['files_per_s']:,.0f} files/s  "
                        f"({small['count']} x {format_bytes(small['size'])} create+write+close)"),
        ("small files, write_bytes", f"{small['write_bytes_files_per_s']:,.0f} files/s  "
                                     "(one compound each on SMB2+)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def cmd_bench(args) -> int:
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        result = run_bench(tree, args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_bench(result))
    return 0


# ---------------------------------------------------------------------------
# argument parsing


def _add_common(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The connection options, accepted before and after the subcommand (the
    subcommand's copy has SUPPRESS defaults so it never hides the first)."""
    def d(value):
        return argparse.SUPPRESS if suppress else value

    g = p.add_argument_group("connection options")
    g.add_argument("-U", "--user", default=d(None), metavar="USER",
                   help="user name, optionally DOMAIN\\user (default: $SMB_USER, "
                        "then the login name)")
    g.add_argument("--password", default=d(None),
                   help="password (default: $SMB_PASSWORD, else asked on a terminal)")
    g.add_argument("--dialect-min", type=parse_dialect, default=d(None), metavar="D",
                   help="lowest dialect: NT1, 2.0.2, 2.1, 3.0, 3.0.2, 3.1.1 (default 2.0.2)")
    g.add_argument("--dialect-max", type=parse_dialect, default=d(None), metavar="D",
                   help="highest dialect (default 3.1.1)")
    g.add_argument("--encrypt", action="store_true", default=d(False),
                   help="encrypt the session (SMB 3.x)")
    g.add_argument("--sign", action="store_true", default=d(False),
                   help="require signing")
    g.add_argument("--timeout", type=float, default=d(None), metavar="S",
                   help="seconds before a silent server is probed / given up (soft)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--hard", action="store_true", default=d(False),
                      help="hard mode: wait for an unresponsive server forever")
    mode.add_argument("--soft", dest="hard", action="store_false", default=d(False),
                      help="soft mode (default): give up with an error")
    g.add_argument("-v", "--verbose", action="count", default=d(0),
                   help="log to stderr (-vv for debug)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="SMB command-line client built on smblayer.",
        epilog="Paths are //host[:port]/share/path or smb://host[:port]/share/path.")
    _add_common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _add_common(p, suppress=True)
        p.set_defaults(func=func)
        return p

    p = add("echo", cmd_echo, "send SMB ECHO requests and print the round-trip times")
    p.add_argument("url", metavar="//host[:port]")
    p.add_argument("-c", "--count", type=int, default=1, help="number of echoes (default 1)")
    p.add_argument("-i", "--interval", type=float, default=0.0, help="seconds between echoes")

    p = add("ls", cmd_ls, "list a directory (//host[:port] alone: the shares)")
    p.add_argument("url", metavar="//host[:port][/share[/path]]")
    p.add_argument("-l", "--long", action="store_true", help="type, size and mtime")
    p.add_argument("-a", "--all", action="store_true", help="include dot files")

    p = add("get", cmd_get, "copy a remote file to a local file (- = stdout)")
    p.add_argument("source", metavar="//host[:port]/share/path")
    p.add_argument("dest", metavar="LOCAL", nargs="?", help="default: the remote base name")

    p = add("put", cmd_put, "copy a local file (- = stdin) to a remote file")
    p.add_argument("source", metavar="LOCAL")
    p.add_argument("dest", metavar="//host[:port]/share/path")

    p = add("cat", cmd_cat, "write remote files to stdout")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")

    p = add("stat", cmd_stat, "show a remote file's size, type and times")
    p.add_argument("url", metavar="//host[:port]/share/path")

    p = add("rm", cmd_rm, "remove remote files")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")

    p = add("mkdir", cmd_mkdir, "create remote directories")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")
    p.add_argument("-p", "--parents", action="store_true", help="create parents, no error "
                   "if it exists")

    p = add("rmdir", cmd_rmdir, "remove empty remote directories")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")

    p = add("mv", cmd_mv, "rename a remote file or directory within its share")
    p.add_argument("source", metavar="//host[:port]/share/path")
    p.add_argument("dest", metavar="NEWPATH", help="a URL on the same share or a share path")

    p = add("bench", cmd_bench, "echo latency/throughput, bulk and small-file I/O")
    p.add_argument("url", metavar="//host[:port]/share[/dir]")
    p.add_argument("--size", type=parse_size, default=64 * 1024 * 1024,
                   help="bulk file size (default 64M)")
    p.add_argument("--count", type=int, default=2000, help="sequential echoes (default 2000)")
    p.add_argument("--threads", type=int, default=16, help="echo threads (default 16)")
    p.add_argument("--duration", type=float, default=2.0,
                   help="seconds per echo throughput test (default 2)")
    p.add_argument("--files", type=int, default=200, help="small files (default 200)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_ext_commands(add)
    return parser


# ---------------------------------------------------------------------------
# share listing, watch, server-side copy (smblayer.rpc, Tree.watch, Tree.copy)


def cmd_ls_shares(args) -> int:
    """``ls //host[:port]``: the shares, like ``smbclient -L``."""
    url = parse_url(args.url, need_share=False)
    user, password, domain = _credentials(args)
    shares = fs.list_shares(url.host, user, password, port=url.port, encrypt=args.encrypt,
                            domain=domain, require_signing=True if args.sign else None,
                            **_client_options(args))
    print(f"{'Sharename':<15} {'Type':<9} Comment")
    print(f"{'---------':<15} {'----':<9} -------")
    for share in shares:
        print(f"{share.name:<15} {share.kind:<9} {share.comment}".rstrip())
    return 0


def cmd_watch(args) -> int:
    """Print change notifications ("action path") until interrupted."""
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        with tree.watch(_smb_path(url.path), recursive=args.recursive) as watch:
            seen = 0
            while args.count is None or seen < args.count:
                event = watch.next(args.idle)
                if event is None:
                    return 1 if seen == 0 else 0
                print(f"{event.action} {event.path}", flush=True)
                seen += 1
    return 0


def cmd_cp(args) -> int:
    """Remote to remote: server-side when both are on one server."""
    src, dst = parse_url(args.source), parse_url(args.dest)
    same_server = (src.host.lower(), src.port) == (dst.host.lower(), dst.port)
    with open_tree(args, src) as stree, contextlib.ExitStack() as stack:
        if same_server and src.share.lower() == dst.share.lower():
            dtree = stree
        elif same_server:          # one session: the server copies across its shares
            dtree = stree.session.tree_connect(dst.share)
            stack.callback(dtree.disconnect)
        else:
            dtree = stack.enter_context(open_tree(args, dst))
        path = _smb_path(dst.path)
        if not path or dtree.isdir(path):
            path = posixpath.join(path, posixpath.basename(_smb_path(src.path)))
        stree.copy(_smb_path(src.path), path, dst_tree=dtree)
    return 0


def _add_ext_commands(add: Callable) -> None:
    p = add("watch", cmd_watch, "print change notifications of a remote directory")
    p.add_argument("url", metavar="//host[:port]/share[/dir]")
    p.add_argument("-r", "--recursive", action="store_true", help="include subdirectories")
    p.add_argument("-n", "--count", type=int, help="stop after this many events")
    p.add_argument("--idle", type=float, metavar="SECONDS",
                   help="stop after this many seconds without an event")

    p = add("cp", cmd_cp, "copy a remote file to a remote path (server-side on one server)")
    p.add_argument("source", metavar="//host[:port]/share/path")
    p.add_argument("dest", metavar="//host[:port]/share/path")


# ---------------------------------------------------------------------------
# main


# Builtin class of an SmbStatusError -> the words a shell user expects.
_ERROR_TEXT = ((FileNotFoundError, "No such file or directory"),
               (FileExistsError, "File exists"),
               (PermissionError, "Permission denied"),
               (IsADirectoryError, "Is a directory"),
               (NotADirectoryError, "Not a directory"))


def describe_error(exc: BaseException, url: Optional[str] = None) -> str:
    """A one-line message for an error raised by a command."""
    if isinstance(exc, SmbStatusError):
        status = status_name(exc.status)
        where = url or exc.path or ""
        if isinstance(exc, SmbAuthError):
            return f"authentication failed ({status})"
        for kind, text in _ERROR_TEXT:
            if isinstance(exc, kind):
                return f"{text}: {where} ({status})"
        return f"{where + ': ' if where else ''}{status}"
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, SmbError):
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, SmbError) else text


def _url_of(args) -> Optional[str]:
    for name in ("current_url", "url", "source", "dest"):
        value = getattr(args, name, None)
        if isinstance(value, str) and value.startswith(("//", "smb:", "\\\\")):
            return value
    urls = getattr(args, "urls", None)
    return urls[0] if urls and len(urls) == 1 else None


def _setup_logging(verbosity: int) -> None:
    if not verbosity:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(levelname)s %(message)s"))
    logger = logging.getLogger("smblayer")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    command = args.command
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"{PROG}: {command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `smblayer cat ... | head`): not an error.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (SmbError, OSError, ValueError) as exc:
        log.debug("%s failed", command, exc_info=True)
        print(f"{PROG}: {command}: {describe_error(exc, _url_of(args))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
