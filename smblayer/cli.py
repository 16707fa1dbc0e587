"""The ``smblayer`` command line (``python -m smblayer``).

    smblayer put [-r] [--continue] [--verify] LOCAL... //host[:port]/share/path
    smblayer get [-r] [--continue] [--verify] //host[:port]/share/path... [LOCAL]
    smblayer ls|cat|stat|mkdir|rmdir|du //host[:port]/share/path
    smblayer rm [-r] [-f] //host[:port]/share/path...
    smblayer mv [-f] //host/share/old //host/share/new    (or a bare new path)
    smblayer df //host[:port]/share
    smblayer echo //host[:port]
    smblayer bench //host[:port]/share [--size 64M] [--json]

URLs may also be written ``smb://host[:port]/share/path``; ``*`` and ``?``
select several remote files in get, ls and rm (local ones in put).  LOCAL
"-" is stdin / stdout.  get and put write to a temporary name and rename it
over the destination when complete.  Credentials come from ``-U
user[%pass]``, ``--password``, ``-A FILE``, ``-N``, ``-k`` or
``SMB_USER``/``SMB_PASSWORD`` (the password is asked for once on a terminal
when missing; it is never printed or logged).

Exit status: 0 success, 1 SMB or I/O error (one line on stderr:
``smblayer: <command>: <error>``), 2 usage error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import getpass
import glob
import hashlib
import io
import json
import logging
import mmap
import os
import posixpath
import re
import signal
import stat
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from . import __version__, fs
from ._progress import Progress, StatusLine, StatusLineHandler, format_bytes
from .config import Dialect, DialectRange, TimeoutPolicy
from .errors import SmbAuthError, SmbError, SmbStatusError, status_error
from .fs.ops import filetime_to_unix
from .proto.status import NtStatus, status_name
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


def parse_dialect(text: str) -> Dialect:
    """'3.1.1', '2.0.2', 'NT1', 'SMB3_11', 'SMB2_1' ... -> Dialect (argparse type)."""
    try:
        return Dialect.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(kind: type, minimum: float, inclusive: bool = True) -> Callable[[str], float]:
    """An argparse type: a ``kind`` number at least (or above) ``minimum``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value != value or value < minimum or (value == minimum and not inclusive) or \
                value == float("inf"):
            bound = f"at least {minimum}" if inclusive else f"above {minimum}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        return value
    parse.__name__ = kind.__name__          # argparse names the type in messages
    return parse


positive_int = _number(int, 1)
positive_float = _number(float, 0, inclusive=False)
non_negative_float = _number(float, 0)


def parse_dfs_host(text: str) -> Tuple[str, str]:
    """'NAME=ADDRESS' -> (name, address) (argparse type of --dfs-host)."""
    name, sep, address = text.partition("=")
    if not sep or not name.strip() or not address.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=ADDRESS, got {text!r}")
    return name.strip(), address.strip()


def parse_dfs_port(text: str) -> Tuple[str, int]:
    """'HOST=PORT' -> (host, port) (argparse type of --dfs-port)."""
    host, port = parse_dfs_host(text)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST=PORT with a port 1-65535, got {text!r}")
    return host, int(port)

WILDCARD_COMMANDS = ("get", "put", "ls", "rm")


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64M', '4k', '1GiB', '1000' -> bytes (binary units; argparse type)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 4K, 64M, 1G)")
    scale = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    value = int(float(m.group(1)) * scale)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be above 0")
    return value


# ---------------------------------------------------------------------------
# connections


@dataclass(frozen=True)
class Credentials:
    """Who to authenticate as.  ``user`` "" is an anonymous session;
    ``password`` None lets Kerberos use the ticket cache (never shown)."""

    user: str
    password: Optional[str] = field(repr=False)
    domain: Optional[str] = None
    auth: str = "negotiate"


def _split_user(text: str) -> Tuple[str, Optional[str], Optional[str]]:
    """smbclient's ``[DOMAIN\\|DOMAIN/]user[%password]`` -> (user, password,
    domain); ``user@realm`` stays whole."""
    password = None
    if "%" in text:
        text, password = text.split("%", 1)
    domain = None
    for sep in ("\\", "/"):
        if sep in text:
            domain, text = text.split(sep, 1)
            break
    return text, password, domain


def read_auth_file(path: str) -> Dict[str, str]:
    """smbclient's authentication file (``-A``): ``username = ...``,
    ``password = ...``, ``domain = ...`` lines ("#" comments)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the authentication file {path!r}: "
                         f"{exc.strerror}") from None
    values: Dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("username", "password", "domain"):
            raise UsageError(f"{path}:{number}: expected username=, password= or domain=")
        values[key] = value.strip()
    return values


def _credentials(args) -> Credentials:
    """The credentials of this run, from (first wins) ``-U user%pass``,
    ``--password``, ``-A FILE``, $SMB_USER/$SMB_PASSWORD; with ``-N`` no
    password (anonymous without a user), with ``-k`` Kerberos; otherwise the
    password is asked once on a terminal."""
    cached = getattr(args, "credentials", None)
    if cached is not None:
        return cached
    user = password = domain = None
    if args.user:
        user, password, domain = _split_user(args.user)
    if args.password is not None:
        password = args.password
    if args.auth_file:
        values = read_auth_file(args.auth_file)
        if user is None and values.get("username"):
            user, file_password, file_domain = _split_user(values["username"])
            domain = domain or file_domain
            password = password if password is not None else file_password
        if password is None:
            password = values.get("password")
        domain = domain or values.get("domain") or None
    if user is None and os.environ.get("SMB_USER"):
        user, env_password, env_domain = _split_user(os.environ["SMB_USER"])
        domain = domain or env_domain
        password = password if password is not None else env_password
    auth = "kerberos" if args.kerberos else (args.auth or "negotiate")
    if args.no_pass:
        if user is None:
            user = ""                        # anonymous
        if password is None:
            password = ""
    if user is None:
        user = getpass.getuser()
    if password is None and not args.kerberos and not args.no_pass:
        password = os.environ.get("SMB_PASSWORD")
        if password is None and auth != "kerberos" and sys.stdin is not None and \
                sys.stdin.isatty():
            password = getpass.getpass(f"Password for {user}: ")
    args.credentials = Credentials(user, password, domain, auth)
    return args.credentials


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


class NoPasswordError(SmbAuthError):
    """Authentication failed and no password had been given."""


class Connections:
    """The connections of one command: one client and one session per
    server (so several URLs on one server share a connection and the
    password is asked once) and one tree per share, all closed by close()."""

    def __init__(self, args):
        self.args = args
        self._clients: Dict[Tuple[str, int], object] = {}
        self._sessions: Dict[Tuple[str, int], "fs.Session"] = {}
        self._trees: Dict[Tuple[str, int, str], "fs.Tree"] = {}
        # where DFS link targets are: a referral names a host without a port
        self._dfs_ports = dict(getattr(args, "dfs_port", None) or ())
        self._dfs_hosts = dict(getattr(args, "dfs_host", None) or ())
        # (address, port) of a DFS target -> the name its referral gave (cifs/NAME)
        self._server_names: Dict[Tuple[str, int], str] = {}

    def client(self, url: SmbUrl):
        key = (url.host, url.port)
        if key not in self._clients:
            posix = {"posix": True} if getattr(self.args, "posix", False) else {}
            self._clients[key] = get_client(url.host, url.port, **_client_options(self.args),
                                            **posix)
        return self._clients[key]

    def session(self, url: SmbUrl) -> "fs.Session":
        key = (url.host, url.port)
        if key not in self._sessions:
            client = self.client(url)
            creds = _credentials(self.args)
            log.info("connecting to %s:%d as %s", url.host, url.port,
                     creds.user or "anonymous")
            try:
                self._sessions[key] = fs.Session(
                    client, creds.user, creds.password, domain=creds.domain,
                    encrypt=self.args.encrypt, require_signing=True if self.args.sign else None,
                    auth_protocol=creds.auth, server_name=self._server_names.get(key))
            except SmbAuthError as exc:
                if creds.password is None and creds.auth != "kerberos":
                    raise NoPasswordError(exc.status, exc.command, message=(
                        "no password was given (and no Kerberos ticket was found): use "
                        "-U user%pass, --password, $SMB_PASSWORD or -A FILE; -N for none, "
                        "-k for Kerberos")) from exc
                raise
        return self._sessions[key]

    def tree(self, url: SmbUrl) -> "fs.Tree":
        key = (url.host, url.port, url.share.lower())
        if key not in self._trees:
            session = self.session(url)
            try:
                tree = session.tree_connect(url.share)
                if getattr(self.args, "posix", False):
                    fs.use_posix(tree, stacklevel=2)
                if tree.dfs:           # a DFS namespace: follow its links
                    tree = fs.DfsTree(tree, self._dfs_target, ports=self._dfs_ports,
                                      hosts=self._dfs_hosts)
                self._trees[key] = tree
            except PermissionError as exc:
                dialect = session.client.dialect
                if dialect < Dialect.SMB3_0 and not getattr(exc, "hint", None):
                    exc.hint = (f"the share may require encryption, which needs SMB 3.0 or "
                                f"later (this connection uses {dialect.name})")
                raise
        return self._trees[key]

    def _dfs_target(self, address: str, port: int, share: str, server_name: str):
        """A DFS link's target share, on this command's connections (a
        session to a target reached by a --dfs-host address authenticates
        to the name the referral gave, as Kerberos needs)."""
        if server_name.lower() != address.lower():
            self._server_names.setdefault((address, port), server_name)
        tree = self.tree(SmbUrl(address, port, share, ""))
        return tree._root if isinstance(tree, fs.DfsTree) else tree

    def close(self) -> None:
        for tree in self._trees.values():
            try:
                tree.close()
            except SmbError as exc:
                log.debug("closing %r failed: %s", tree, exc)
        for session in self._sessions.values():
            try:
                session.logoff()
            except SmbError as exc:
                log.debug("logging off %r failed: %s", session, exc)
        for client in self._clients.values():
            client.release()
        self._trees.clear()
        self._sessions.clear()
        self._clients.clear()

    def __enter__(self) -> "Connections":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def open_tree(args, url: SmbUrl) -> Iterator["fs.Tree"]:
    """The tree for ``url``: from the command's connections (``main`` sets
    ``args.connections``), else on connections closed on exit."""
    connections = getattr(args, "connections", None)
    if connections is not None:
        yield connections.tree(url)
        return
    with Connections(args) as connections:
        yield connections.tree(url)


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


@contextlib.contextmanager
def _closing(f) -> Iterator:
    """Like ``with f:``, but when the block failed (an error, Ctrl-C) an
    error from closing is logged, not raised: the first error is the one
    to report."""
    try:
        yield f
    except BaseException:
        try:
            f.close()
        except (SmbError, OSError) as exc:
            log.debug("closing %s after an error failed: %s", getattr(f, "name", f), exc)
        raise
    f.close()


@contextlib.contextmanager
def _own_bar(bar, label: str, size: Optional[int], progress: Optional[bool]):
    """``bar`` when the caller has one (one bar for many files), else a
    Progress of this transfer's own, closed at the end."""
    if bar is not None:
        yield bar
        return
    with Progress(label, size, enabled=_progress_enabled(size, progress)) as own:
        yield own


def upload(tree, local: BinaryIO, path: str, size: Optional[int], label: str = "",
           progress: Optional[bool] = None, *, bar=None, offset: int = 0) -> int:
    """Copy ``local`` to ``path`` in large pipelined writes; return the bytes.
    ``progress``: show a bar (default: on a terminal, for 1 MiB and more);
    ``bar``: a Progress to update instead.  ``offset`` > 0 resumes: the
    remote file keeps its first ``offset`` bytes and ``local`` is read from
    there.  A regular file is sent straight from a read-only mapping (no copy
    here); anything else is read by a helper thread while the network writes."""
    total = 0
    chunk = _chunk_size(tree)
    with _closing(tree.open(path, "r+b" if offset else "wb", buffering=0)) as f, \
            _own_bar(bar, label, size, progress) as bar:
        if offset:
            f.seek(offset)
            f.truncate(offset)
        with _mapping(local, mmap.ACCESS_READ) as mapped:
            if mapped is not None:
                for start in range(offset, len(mapped), chunk):
                    part = mapped[start:start + chunk]
                    _write_all(f, part)
                    total += len(part)
                    bar.update(len(part))
                    part.release()
                return total
        if offset:
            local.seek(offset)
        with _DoubleBuffer(chunk) as buffers:
            for view in buffers.produced(lambda buf: _fill(local.readinto, buf)):
                _write_all(f, view)
                total += len(view)
                bar.update(len(view))
        return total


def download(tree, path: str, local: BinaryIO, label: str = "",
             progress: Optional[bool] = None, *, bar=None, offset: int = 0) -> int:
    """Copy ``path`` to ``local`` in large pipelined reads; return the bytes.
    ``progress`` and ``bar`` as for upload(); ``offset`` > 0 resumes: the
    first ``offset`` bytes are in ``local`` already (and not fetched again).
    Into a regular file opened for reading and writing the data is received
    straight into a shared mapping of it (no copy here); otherwise the local
    file is written by a helper thread while the network reads."""
    chunk = _chunk_size(tree)
    with _closing(tree.open(path, "rb", buffering=0)) as f:
        size = f.handle.info.size
        with _own_bar(bar, label, size, progress) as bar:
            return _download_into(tree, f, size, local, bar, chunk, offset)


def _download_into(tree, f, size: int, local: BinaryIO, bar, chunk: int, offset: int) -> int:
    """The body of download(): ``f`` is open, ``size`` its size."""
    if offset:
        offset = min(offset, size)
        f.seek(offset)
    total = offset
    if size > offset and _can_map_for_write(local):
        local.truncate(size)
        with _mapping(local, mmap.ACCESS_WRITE) as mapped:
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
        return total - offset
    if offset:
        local.seek(offset)
        local.truncate(offset)
    with _DoubleBuffer(chunk) as buffers:
        while True:
            buf = buffers.free()
            # Near the end ask for one request's worth only, so EOF is
            # confirmed without a burst of READs past it.
            ask = min(chunk, max(size - total, tree.io_read_size))
            n = f.readinto(buf[:ask])
            if not n:
                buffers.drain()
                return total - offset
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


def _credentials_given(args) -> bool:
    """Whether the command line or the environment names credentials (no
    prompt needed to find out)."""
    return bool(args.user or args.auth_file or args.no_pass or args.kerberos or
                args.password is not None or os.environ.get("SMB_USER"))


def cmd_echo(args) -> int:
    """ECHO round trips.  With credentials the echoes go inside a session
    (signed with its key), as smbclient's: some servers refuse an ECHO with
    SessionId 0."""
    url = parse_url(args.url, need_share=False)
    with Connections(args) as connections:
        client = connections.client(url)
        if _credentials_given(args):
            connections.session(url)
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


# ---------------------------------------------------------------------------
# remote names: wildcards and trees


def _isdir(st) -> bool:
    return stat.S_ISDIR(st.st_mode)


def _is_remote_dir(tree, path: str) -> bool:
    return not path or tree.isdir(path)


def _entries(tree, path: str, pattern: str = "*") -> List[Tuple[str, object]]:
    """(name, stat) of the entries of directory ``path`` whose names match
    ``pattern`` (``*`` and ``?``, any case, matched by the server in its
    directory query; dot names only for a pattern starting with ".")."""
    hidden_ok = pattern == "*" or pattern.startswith(".")
    return [(e.name, e.stat()) for e in tree.scandir(path, pattern)
            if hidden_ok or not e.name.startswith(".")]


def _expand(tree, path: str, url: SmbUrl) -> List[Tuple[str, object]]:
    """(path, stat) of each remote path matching ``path``, whose components
    may hold ``*`` and ``?``; a plain path is just stat'ed.  Nothing there:
    FileNotFoundError.  (Like Tree.glob, but with each match's stat from the
    directory query: get needs sizes and times, rm the type.)"""
    if not _has_wildcard(path):
        return [(path, tree.stat(path))]
    found: List[Tuple[str, object]] = [("", None)]
    parts = path.split("/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        step: List[Tuple[str, object]] = []
        for base, _st in found:
            if not _has_wildcard(part):
                step.append((posixpath.join(base, part), None))
                continue
            try:
                matches = _entries(tree, base, part)
            except (FileNotFoundError, NotADirectoryError):
                continue
            step.extend((posixpath.join(base, name), st) for name, st in matches
                        if last or _isdir(st))
        found = step
    result = []
    for p, st in found:
        if st is None:
            try:
                st = tree.stat(p)
            except (FileNotFoundError, NotADirectoryError):
                continue
        result.append((p, st))
    if not result:
        raise status_error(NtStatus.NO_SUCH_FILE, "QUERY_DIRECTORY", str(url.with_path(path)))
    return sorted(result, key=lambda r: r[0].lower())


def _raise(exc: BaseException) -> None:
    raise exc


def _walk(tree, top: str):
    """Tree.walk_entries, top-down, failing on a directory it cannot list
    (a copy must not skip it silently)."""
    return tree.walk_entries(top, onerror=_raise)


# ---------------------------------------------------------------------------
# commands: ls, stat


def _long_line(name: str, st, posix: bool = False) -> str:
    """``ls -l``: with the SMB3 POSIX extensions (--posix) the mode and the
    owner's and group's ids as the server gives them."""
    kind = "d" if _isdir(st) else "-"
    mtime = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    if posix:
        kind = f"{stat.filemode(st.st_mode)} {st.st_nlink:>3} {st.st_uid:>6} {st.st_gid:>6}"
    return f"{kind} {st.st_size:>12} {mtime} {name}{'/' if _isdir(st) else ''}"


def cmd_ls(args) -> int:
    if not parse_url(args.url, need_share=False).share:
        return cmd_ls_shares(args)
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        path = _smb_path(url.path)
        if _has_wildcard(path):
            listing = [(posixpath.basename(p), st) for p, st in _expand(tree, path, url)]
        else:
            st = tree.stat(path) if path else None
            if st is not None and not _isdir(st):
                listing = [(posixpath.basename(path), st)]
            else:
                listing = [(name, est) for name, est in _entries(tree, path)
                           if args.all or not name.startswith(".")]
        for name, est in sorted(listing, key=lambda e: e[0].lower()):
            print(_long_line(name, est, getattr(tree, "posix", False)) if args.long
                  else name + ("/" if _isdir(est) else ""))
    return 0


def cmd_stat(args) -> int:
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        info = tree.file_info(_smb_path(url.path))
        fmt = "%Y-%m-%d %H:%M:%S"
        print(f"  File: {url}")
        print(f"  Type: {'directory' if info.is_dir else 'regular file'}")
        print(f"  Size: {info.size}")
        print(f"  Attributes: 0x{info.attributes:08x}")
        for label, ft in (("Access", info.last_access_time), ("Modify", info.last_write_time),
                          ("Change", info.change_time), ("Birth", info.creation_time)):
            t = filetime_to_unix(ft)
            print(f"  {label}: {time.strftime(fmt, time.localtime(t)) if t else '-'}")
    return 0


# ---------------------------------------------------------------------------
# commands: get and put


@dataclass
class _Job:
    """One file to copy: ``src`` and ``dest`` paths (remote ones share-
    relative), the source's size and times."""

    src: str
    dest: str
    size: int
    atime: float
    mtime: float


class VerifyError(SmbError):
    """The checksum read back after a transfer differs from the source's."""

    def __init__(self, source: str, dest: str):
        super().__init__(f"--verify: the SHA-256 of {dest} differs from {source}'s after "
                         "the transfer (the destination was not replaced)")
        self.source = source
        self.dest = dest


def _is_url(text: str) -> bool:
    return text.startswith(("//", "smb:", "\\\\"))


def _split_get_args(paths: Sequence[str]) -> Tuple[List[str], Optional[str]]:
    if len(paths) > 1 and not _is_url(paths[-1]):
        return list(paths[:-1]), paths[-1]
    return list(paths), None


def _one_share(urls: Sequence[SmbUrl]) -> SmbUrl:
    first = urls[0]
    for url in urls[1:]:
        if (url.host, url.port, url.share.lower()) != (first.host, first.port,
                                                        first.share.lower()):
            raise UsageError("all remote paths of one command must be on one share")
    return first


def _remote_digest(tree, path: str) -> bytes:
    digest = hashlib.sha256()
    buf = memoryview(bytearray(_chunk_size(tree)))
    with _closing(tree.open(path, "rb", buffering=0)) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return digest.digest()
            digest.update(buf[:n])


def _local_digest(local: BinaryIO) -> bytes:
    local.flush()
    local.seek(0)
    return hashlib.file_digest(local, "sha256").digest()


@contextlib.contextmanager
def _local_target(dest: str, resume: bool) -> Iterator[Tuple[BinaryIO, int]]:
    """(file, offset) to download ``dest`` into: a new temporary file beside
    it (offset 0; removed on failure) or with ``resume`` the partial file
    ``.NAME.smblayer-partial`` (offset: its size; kept on failure for the
    next --continue).  Renamed over ``dest`` on success."""
    if not resume:
        with _local_temp(dest) as local:
            yield local, 0
        return
    folder, name = os.path.split(dest)
    partial = os.path.join(folder, f".{name}.smblayer-partial")
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with open(fd, "r+b") as local:
            yield local, os.fstat(local.fileno()).st_size
    except VerifyError:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    os.replace(partial, dest)


def _get_one(args, tree, url: SmbUrl, job: _Job, bar) -> int:
    """Copy one remote file to a local file; returns the bytes moved."""
    args.current_url = str(url.with_path(job.src))          # for error messages
    if args.resume and _local_size(job.dest) == job.size:
        log.info("get: %s is complete already", job.dest)
        bar.update(job.size)
        return 0
    with _local_target(job.dest, args.resume) as (local, offset):
        if not offset and job.size <= tree.io_read_size:
            data = tree.read_bytes(job.src)        # one round trip where it can
            local.write(data)
            n = len(data)
            bar.update(n)
        else:
            n = download(tree, job.src, local, bar=bar, offset=offset)
        if args.verify and _local_digest(local) != _remote_digest(tree, job.src):
            raise VerifyError(job.src, job.dest)
    os.utime(job.dest, (job.atime, job.mtime))
    return n


def _local_size(path: str) -> Optional[int]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _get_jobs(args, tree, url: SmbUrl, sources: List[Tuple[str, object]], dest: str,
              many: bool) -> Tuple[List[str], List[_Job]]:
    """(local directories to create, files to copy) for ``get``."""
    into_dir = many or os.path.isdir(dest)
    if many and not os.path.isdir(dest):
        raise UsageError(f"the target {dest!r} is not a directory")
    dirs: List[str] = []
    jobs: List[_Job] = []
    for path, st in sources:
        name = posixpath.basename(path) or url.share
        target = os.path.join(dest, name) if into_dir else dest
        if not _isdir(st):
            jobs.append(_Job(path, target, st.st_size, st.st_atime, st.st_mtime))
            continue
        if not args.recursive:
            raise IsADirectoryError(errno.EISDIR, "Is a directory (get -r copies directories)",
                                    str(url.with_path(path)))
        for dirpath, _subdirs, files in _walk(tree, path):
            rel = posixpath.relpath(dirpath, path) if path else dirpath
            local_dir = os.path.normpath(os.path.join(target, *rel.split("/")))
            dirs.append(local_dir)
            for entry in files:
                fst = entry.stat()
                jobs.append(_Job(entry.path, os.path.join(local_dir, entry.name),
                                 fst.st_size, fst.st_atime, fst.st_mtime))
    return dirs, jobs


def _run_jobs(args, jobs: List[_Job], label: str, one: Callable) -> int:
    """Run ``one(args, job, bar)`` for each job under one progress bar."""
    total = 0
    with _new_bar(args, label, sum(j.size for j in jobs)) as bar:
        for i, job in enumerate(jobs, 1):
            if len(jobs) > 1:
                bar.label = f"{i}/{len(jobs)} {posixpath.basename(job.src.replace(os.sep, '/'))}"
            total += one(args, job, bar)
    return total


def cmd_get(args) -> int:
    texts, dest = _split_get_args(args.paths)
    urls = [parse_url(t) for t in texts]
    url = _one_share(urls)
    if dest == "-" and (args.recursive or args.resume or args.verify or len(urls) > 1):
        raise UsageError("get to stdout takes one file, without -r, --continue or --verify")
    with open_tree(args, url) as tree:
        if dest == "-":
            path = _smb_path(url.path)
            n = _get_stream(args, tree, path, _stdout(), posixpath.basename(path))
            _stdout().flush()
            log.info("get: %d bytes from %s to stdout", n, url)
            return 0
        sources: List[Tuple[str, object]] = []
        for text, u in zip(texts, urls):
            args.current_url = text
            sources.extend(_expand(tree, _smb_path(u.path), u))
        args.current_url = None
        many = len(sources) > 1 or any(_has_wildcard(u.path) for u in urls)
        if dest is None:
            single_file = not many and not _isdir(sources[0][1])
            dest = posixpath.basename(sources[0][0]) if single_file else "."
        dirs, jobs = _get_jobs(args, tree, url, sources, dest, many)
        for d in dirs:
            os.makedirs(d, exist_ok=True)
        label = posixpath.basename(sources[0][0]) if len(sources) == 1 else url.share
        n = _run_jobs(args, jobs, label or url.share,
                      lambda a, job, bar: _get_one(a, tree, url, job, bar))
    log.info("get: %d bytes in %d files from %s to %s", n, len(jobs), url, dest)
    return 0


@contextlib.contextmanager
def _local_temp(dest: str) -> Iterator[BinaryIO]:
    """A new file beside ``dest`` (same folder, so the rename is atomic),
    opened for reading and writing; renamed over ``dest`` when the block
    succeeds, removed when it fails.  ``dest`` is never touched before."""
    folder, name = os.path.split(dest)
    while True:
        temp = os.path.join(folder, f".{name}.smblayer-{os.urandom(4).hex()}")
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:            # name the destination, not the temporary file
            raise OSError(exc.errno, exc.strerror, dest) from None
    try:
        with open(fd, "w+b") as local:
            yield local
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _get_stream(args, tree, path: str, out: BinaryIO, label: str) -> int:
    with _closing(tree.open(path, "rb", buffering=0)) as f:
        size = f.handle.info.size
        with _new_bar(args, label, size) as bar:
            return _download_into(tree, f, size, out, bar, _chunk_size(tree), 0)


def _put_jobs(args, tree, url: SmbUrl, sources: List[str], dest: str,
              many: bool) -> Tuple[List[str], List[_Job]]:
    """(remote directories to create, files to copy) for ``put``."""
    into_dir = many or _is_remote_dir(tree, dest) or url.path.endswith("/")
    if many and not _is_remote_dir(tree, dest):
        raise UsageError(f"the target {url} is not a directory")
    dirs: List[str] = []
    jobs: List[_Job] = []
    for src in sources:
        st = os.stat(src)
        name = os.path.basename(os.path.normpath(src))
        target = posixpath.join(dest, name) if into_dir else dest
        if not stat.S_ISDIR(st.st_mode):
            jobs.append(_Job(src, target, st.st_size, st.st_atime, st.st_mtime))
            continue
        if not args.recursive:
            raise IsADirectoryError(errno.EISDIR, "Is a directory (put -r copies directories)",
                                    src)
        for dirpath, subdirs, files in os.walk(src):
            subdirs.sort()
            rel = os.path.relpath(dirpath, src)
            remote_dir = target if rel == "." else posixpath.join(target, *rel.split(os.sep))
            dirs.append(remote_dir)
            for fname in sorted(files):
                local = os.path.join(dirpath, fname)
                fst = os.stat(local)
                if stat.S_ISREG(fst.st_mode):
                    jobs.append(_Job(local, posixpath.join(remote_dir, fname), fst.st_size,
                                     fst.st_atime, fst.st_mtime))
    return dirs, jobs


def _local_sources(texts: Sequence[str]) -> List[str]:
    """Local paths, with wildcards expanded where the shell did not."""
    out: List[str] = []
    for text in texts:
        if _has_wildcard(text) and not os.path.exists(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", text)
            out.extend(matches)
        else:
            if not os.path.exists(text):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", text)
            out.append(text)
    return out


def _remote_mkdir(tree, path: str) -> None:
    if not path:
        return
    try:
        tree.mkdir(path)
    except FileExistsError:
        if not _is_remote_dir(tree, path):
            raise


def cmd_put(args) -> int:
    if len(args.paths) < 2:
        raise UsageError("put needs a local source and a remote destination")
    texts, url_text = args.paths[:-1], args.paths[-1]
    url = parse_url(url_text)
    with open_tree(args, url) as tree:
        path = _smb_path(url.path)
        if texts == ["-"]:
            if args.recursive or args.resume or args.verify:
                raise UsageError("put from stdin takes no -r, --continue or --verify")
            if not path or url.path.endswith("/") or _is_remote_dir(tree, path):
                raise UsageError("put from stdin needs a remote file name")
            with _new_bar(args, posixpath.basename(path), None) as bar:
                n = _put_file(tree, sys.stdin.buffer, path, None, bar)
            log.info("put: %d bytes from stdin to %s", n, url)
            return 0
        sources = _local_sources(texts)
        many = len(sources) > 1
        dirs, jobs = _put_jobs(args, tree, url, sources, path, many)
        for d in dirs:
            _remote_mkdir(tree, d)
        label = os.path.basename(os.path.normpath(sources[0])) if len(sources) == 1 else url.share
        n = _run_jobs(args, jobs, label, lambda a, job, bar: _put_one(a, tree, url, job, bar))
    log.info("put: %d bytes in %d files to %s", n, len(jobs), url)
    return 0


def _remote_size(tree, path: str) -> Optional[int]:
    try:
        st = tree.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None if _isdir(st) else st.st_size


def _put_one(args, tree, url: SmbUrl, job: _Job, bar) -> int:
    """Copy one local file to a remote file; returns the bytes moved."""
    args.current_url = str(url.with_path(job.dest))         # for error messages
    if args.resume and _remote_size(tree, job.dest) == job.size:
        log.info("put: %s is complete already", job.dest)
        bar.update(job.size)
        return 0
    with open(job.src, "rb") as local:
        return _put_file(tree, local, job.dest, job.size, bar, resume=args.resume,
                         verify=args.verify, times=(job.atime, job.mtime))


def _remote_temp_name(path: str) -> str:
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f".{name}.smblayer-{os.urandom(4).hex()}")


def _put_file(tree, local: BinaryIO, path: str, size: Optional[int], bar, *,
              resume: bool = False, verify: bool = False,
              times: Optional[Tuple[float, float]] = None) -> int:
    """Upload to a temporary name in the destination folder and rename it
    over ``path`` on success; on failure or Ctrl-C the temporary file is
    deleted and ``path`` stays as it was (rsync's way).  With ``resume`` the
    temporary name is ``.NAME.smblayer-partial``, resumed from its size and
    kept on failure."""
    if resume:
        folder, name = posixpath.split(path)
        temp = posixpath.join(folder, f".{name}.smblayer-partial")
        offset = _remote_size(tree, temp) or 0
        if size is not None and offset > size:
            offset = 0
    else:
        temp, offset = _remote_temp_name(path), 0
    try:
        if not offset and size is not None and size <= tree.io_write_size:
            data = local.read()                    # one round trip where it can
            n = tree.write_bytes(temp, data)
            bar.update(n)
        else:
            n = upload(tree, local, temp, size, bar=bar, offset=offset)
        if verify and _local_digest(local) != _remote_digest(tree, temp):
            raise VerifyError(getattr(local, "name", "stdin"), path)
        if times is not None:
            tree.utime(temp, times)
        tree.replace(temp, path)
    except BaseException as exc:
        if not resume or isinstance(exc, VerifyError):
            try:
                tree.remove(temp)
            except (SmbError, ValueError) as exc2:
                log.debug("removing %s failed: %s", temp, exc2)
        raise
    return n


# ---------------------------------------------------------------------------
# commands: cat, rm, mkdir, rmdir, mv, du, df


def cmd_cat(args) -> int:
    urls = [parse_url(u) for u in args.urls]
    out = _stdout()
    for text, url in zip(args.urls, urls):
        args.current_url = text
        with open_tree(args, url) as tree:
            download(tree, _smb_path(url.path), out, "", progress=False)
        out.flush()
    return 0


def _each_remote(args) -> Iterator[Tuple["fs.Tree", str, SmbUrl]]:
    """(tree, path, url) for each URL argument (trees shared per share)."""
    for text in args.urls:
        args.current_url = text
        url = parse_url(text)
        with open_tree(args, url) as tree:
            yield tree, _smb_path(url.path), url


def cmd_rm(args) -> int:
    for tree, path, url in _each_remote(args):
        if not path:
            raise UsageError(f"rm: refusing to remove the share root {url}")
        try:
            matches = _expand(tree, path, url)
        except (FileNotFoundError, NotADirectoryError):
            if args.force:
                continue
            raise
        for match, st in matches:
            args.current_url = str(url.with_path(match))
            try:
                if not _isdir(st):
                    tree.remove(match)
                elif args.recursive:
                    tree.rmtree(match)
                else:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory (rm -r removes "
                                            "directories)", args.current_url)
            except FileNotFoundError:
                if not args.force:
                    raise
    return 0


def cmd_mkdir(args) -> int:
    for tree, path, _url in _each_remote(args):
        if not args.parents:
            tree.mkdir(path)
            continue
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                tree.mkdir(sub)
            except FileExistsError:
                if not _is_remote_dir(tree, sub):
                    raise
    return 0


def cmd_rmdir(args) -> int:
    for tree, path, _url in _each_remote(args):
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
        source, target = _smb_path(url.path), _smb_path(new_path)
        if _is_remote_dir(tree, target):       # like mv: into an existing directory
            target = posixpath.join(target, posixpath.basename(source))
        try:
            if args.force:
                tree.replace(source, target)
            else:
                tree.rename(source, target)
        except FileExistsError as exc:
            exc.path = target
            exc.hint = "the destination exists (mv -f replaces a file)"
            args.current_url = str(url.with_path(target))
            raise
    return 0


def cmd_du(args) -> int:
    """Bytes under each directory (apparent sizes, like du -b)."""
    def show(n: int, where: str) -> None:
        print(f"{format_bytes(n) if args.human else n}\t{where}")

    for tree, path, url in _each_remote(args):
        totals: Dict[str, int] = {}
        order: List[str] = []
        for dirpath, _dirs, files in _walk(tree, path) if _is_remote_dir(tree, path) else ():
            order.append(dirpath)
            totals[dirpath] = sum(entry.stat().st_size for entry in files)
        if not order:                                  # a file
            show(tree.stat(path).st_size, str(url))
            continue
        for dirpath in reversed(order):                # children before parents
            if dirpath != path:
                parent = posixpath.dirname(dirpath)
                totals[parent] = totals.get(parent, 0) + totals[dirpath]
        for dirpath in reversed(order):
            if args.summarize and dirpath != path:
                continue
            show(totals[dirpath], str(url.with_path(dirpath)))
    return 0


def cmd_df(args) -> int:
    """Size, used and free space of the shares' volumes."""
    rows = [("Share", "Size", "Used", "Avail", "Use%")]
    for tree, _path, url in _each_remote(args):
        v = tree.statvfs()
        total, free, avail = (v.f_frsize * n for n in (v.f_blocks, v.f_bfree, v.f_bavail))
        used = max(total - free, 0)
        percent = f"{-(-used * 100 // total)}%" if total else "-"
        size = format_bytes if args.human else str
        rows.append((str(url.with_path("")), size(total), size(used), size(avail), percent))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join([row[0].ljust(widths[0])] +
                        [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]).rstrip())
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
    g.add_argument("-U", "--user", default=d(None), metavar="[DOMAIN\\]USER[%PASS]",
                   help="user name, optionally with a domain and a password as with "
                        "smbclient (default: $SMB_USER, then the login name)")
    g.add_argument("--password", default=d(None),
                   help="password (default: $SMB_PASSWORD, else asked on a terminal)")
    g.add_argument("-A", "--authentication-file", dest="auth_file", default=d(None),
                   metavar="FILE", help="smbclient's authentication file: lines "
                   "username = ..., password = ..., domain = ...")
    g.add_argument("-N", "--no-pass", action="store_true", default=d(False),
                   help="no password (anonymous when no user is given)")
    g.add_argument("-k", "--kerberos", action="store_true", default=d(False),
                   help="Kerberos with the ticket cache ($KRB5CCNAME)")
    g.add_argument("--auth", choices=("negotiate", "ntlm", "kerberos"), default=d(None),
                   help="authentication protocol (default negotiate)")
    g.add_argument("--dialect-min", type=parse_dialect, default=d(None), metavar="D",
                   help="lowest dialect: NT1, 2.0.2, 2.1, 3.0, 3.0.2, 3.1.1 (default 2.0.2)")
    g.add_argument("--dialect-max", type=parse_dialect, default=d(None), metavar="D",
                   help="highest dialect (default 3.1.1)")
    g.add_argument("--encrypt", action="store_true", default=d(False),
                   help="encrypt the session (SMB 3.x)")
    g.add_argument("--sign", action="store_true", default=d(False),
                   help="require signing")
    g.add_argument("--timeout", type=positive_float, default=d(None), metavar="S",
                   help="seconds before a silent server is probed / given up (soft)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--hard", action="store_true", default=d(False),
                      help="hard mode: wait for an unresponsive server forever")
    mode.add_argument("--soft", dest="hard", action="store_false", default=d(False),
                      help="soft mode (default): give up with an error")
    g.add_argument("--dfs-port", action="append", type=parse_dfs_port, default=d(None),
                   metavar="HOST=PORT", help="port of a DFS link target host (a referral "
                   "names none: default the connection's port for its host, else 445); "
                   "repeatable")
    g.add_argument("--dfs-host", action="append", type=parse_dfs_host, default=d(None),
                   metavar="NAME=ADDRESS", help="address to connect to for a host a DFS "
                   "referral names; repeatable")
    g.add_argument("--posix", action="store_true", default=d(False),
                   help="use the SMB3 POSIX extensions where the server offers them "
                        "(ls -l then shows modes and owners)")
    g.add_argument("-v", "--verbose", action="count", default=d(0),
                   help="log to stderr (-vv for debug)")


def _add_transfer_options(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("-r", "-R", "--recursive", action="store_true",
                   help="copy directories and what they hold")
    p.add_argument("-c", "--continue", dest="resume", action="store_true",
                   help="resume an interrupted transfer by size (the partial file is kept "
                        "as .NAME.smblayer-partial); files complete already are skipped")
    p.add_argument("--verify", action="store_true",
                   help="read the destination back and compare SHA-256 checksums before "
                        "it replaces the old file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="SMB command-line client built on smblayer.",
        epilog="Paths are //host[:port]/share/path or smb://host[:port]/share/path.")
    _add_common(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, func: Callable, help: str, epilog: Optional[str] = None,
            **kwargs) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=epilog, **kwargs)
        _add_common(p, suppress=True)
        p.set_defaults(func=func)
        return p

    p = add("echo", cmd_echo, "send SMB ECHO requests and print the round-trip times")
    p.add_argument("url", metavar="//host[:port]")
    p.add_argument("-c", "--count", type=positive_int, default=1, help="number of echoes (default 1)")
    p.add_argument("-i", "--interval", type=non_negative_float, default=0.0, help="seconds between echoes")

    p = add("ls", cmd_ls, "list a directory (//host[:port] alone: the shares)")
    p.add_argument("url", metavar="//host[:port][/share[/path]]")
    p.add_argument("-l", "--long", action="store_true", help="type, size and mtime")
    p.add_argument("-a", "--all", action="store_true", help="include dot files")

    p = add("get", cmd_get, "copy remote files to local ones (- = stdout)",
            epilog="Each file is written to a temporary name beside its destination and "
                   "renamed over it when complete, so a failed get leaves an existing file "
                   "as it was.  Wildcards (* and ?) select remote files; the modification "
                   "times are kept.")
    p.add_argument("paths", nargs="+", metavar="//host[:port]/share/path [... LOCAL]",
                   help="remote files (wildcards allowed), then a local file or directory "
                        "(default: the remote base name, or . for several files)")
    _add_transfer_options(p, "get")

    p = add("put", cmd_put, "copy local files (- = stdin) to remote ones",
            epilog="The data goes to a temporary file in the destination folder, renamed "
                   "over the destination when complete; after an error or Ctrl-C the "
                   "temporary file is deleted and the destination is left as it was "
                   "(with --continue it is kept, to be resumed).  The modification times "
                   "are kept.")
    p.add_argument("paths", nargs="+", metavar="LOCAL [...] //host[:port]/share/path",
                   help="local files (wildcards allowed), then the remote file or directory")
    _add_transfer_options(p, "put")

    p = add("cat", cmd_cat, "write remote files to stdout")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")

    p = add("stat", cmd_stat, "show a remote file's size, type and times")
    p.add_argument("url", metavar="//host[:port]/share/path")

    p = add("rm", cmd_rm, "remove remote files (wildcards allowed)")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")
    p.add_argument("-r", "-R", "--recursive", action="store_true",
                   help="remove directories and what they hold")
    p.add_argument("-f", "--force", action="store_true", help="no error for missing files")

    p = add("df", cmd_df, "size and free space of remote shares", conflict_handler="resolve")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share")
    p.add_argument("-h", "--human-readable", dest="human", action="store_true",
                   help="sizes in KiB, MiB, ...")

    p = add("du", cmd_du, "bytes used under remote directories", conflict_handler="resolve")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")
    p.add_argument("-s", "--summarize", action="store_true", help="only a total per argument")
    p.add_argument("-h", "--human-readable", dest="human", action="store_true",
                   help="sizes in KiB, MiB, ...")

    p = add("mkdir", cmd_mkdir, "create remote directories")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")
    p.add_argument("-p", "--parents", action="store_true", help="create parents, no error "
                   "if it exists")

    p = add("rmdir", cmd_rmdir, "remove empty remote directories")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")

    p = add("mv", cmd_mv, "rename a remote file or directory within its share")
    p.add_argument("source", metavar="//host[:port]/share/path")
    p.add_argument("dest", metavar="NEWPATH", help="a URL on the same share or a share path "
                   "(an existing directory: move into it)")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing file")

    p = add("bench", cmd_bench, "echo latency/throughput, bulk and small-file I/O")
    p.add_argument("url", metavar="//host[:port]/share[/dir]")
    p.add_argument("--size", type=parse_size, default=64 * 1024 * 1024,
                   help="bulk file size (default 64M)")
    p.add_argument("--count", type=positive_int, default=2000, help="sequential echoes (default 2000)")
    p.add_argument("--threads", type=positive_int, default=16, help="echo threads (default 16)")
    p.add_argument("--duration", type=positive_float, default=2.0,
                   help="seconds per echo throughput test (default 2)")
    p.add_argument("--files", type=positive_int, default=200, help="small files (default 200)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_ext_commands(add)
    return parser


# ---------------------------------------------------------------------------
# share listing, watch, server-side copy (smblayer.rpc, Tree.watch, Tree.copy)


def cmd_ls_shares(args) -> int:
    """``ls //host[:port]``: the shares, like ``smbclient -L``."""
    url = parse_url(args.url, need_share=False)
    cred = _credentials(args)
    shares = fs.list_shares(url.host, cred.user, cred.password, port=url.port,
                            encrypt=args.encrypt, domain=cred.domain,
                            auth_protocol=cred.auth,
                            require_signing=True if args.sign else None,
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
        if isinstance(exc, NoPasswordError):
            return f"authentication failed ({status}): {exc.strerror}"
        if isinstance(exc, SmbAuthError):
            return f"authentication failed ({status})"
        hint = getattr(exc, "hint", None)
        if not hint and exc.status == NtStatus.OBJECT_NAME_INVALID and _has_wildcard(where):
            hint = f"wildcards work with {', '.join(WILDCARD_COMMANDS)} only"
        hint = f"; {hint}" if hint else ""
        if exc.status == NtStatus.BAD_NETWORK_NAME:
            return f"no such share: {where} ({status})"
        for kind, text in _ERROR_TEXT:
            if isinstance(exc, kind):
                return f"{text}: {where} ({status}){hint}"
        return f"{where + ': ' if where else ''}{status}{hint}"
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, SmbError):
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, SmbError) else text


def _url_of(args) -> Optional[str]:
    """The URL a failed command was working on, for its error message."""
    for name in ("current_url", "url", "source", "dest"):
        value = getattr(args, name, None)
        if isinstance(value, str) and _is_url(value):
            return value
    urls = [u for u in getattr(args, "urls", None) or getattr(args, "paths", None) or ()
            if _is_url(u)]
    return urls[0] if len(urls) == 1 else None


@contextlib.contextmanager
def _logging_to(line: StatusLine, verbosity: int) -> Iterator[None]:
    """Log records of the "smblayer" logger go to stderr through ``line``
    (above the progress bar, never on its line): warnings always, and with
    -v / -vv info / debug."""
    handler = StatusLineHandler(line)
    logger = logging.getLogger("smblayer")
    previous = logger.level
    if verbosity:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(threadName)s %(levelname)s %(message)s"))
        logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    else:
        handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _new_bar(args, label: str, size: Optional[int]) -> Progress:
    """A progress bar on the command's status line (shown on a terminal
    for transfers of 1 MiB or more, or of unknown size)."""
    return Progress(label, size, enabled=_progress_enabled(size),
                    line=getattr(args, "status_line", None))


@contextlib.contextmanager
def _watch_interrupts() -> Iterator[threading.Event]:
    """Ctrl-C raises KeyboardInterrupt as usual, and the returned event
    records that it happened: a layer below may turn the interrupt into an
    error of some request, and it is still reported as an interrupt."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command
    args.status_line = StatusLine(sys.stderr)
    with _watch_interrupts() as interrupted, _logging_to(args.status_line, args.verbose):
        try:
            with Connections(args) as args.connections:
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
            if interrupted.is_set():
                print(f"\n{PROG}: {command}: interrupted", file=sys.stderr)
                return 130
            print(f"{PROG}: {command}: {describe_error(exc, _url_of(args))}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
