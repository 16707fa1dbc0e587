"""Where a command connects, and as whom: ``//host[:port]/share/path``
URLs (:func:`parse_url`), credentials (``-U user%pass``, ``--password``,
``-A FILE``, ``-N``, ``-k``, $SMB_USER/$SMB_PASSWORD: :func:`credentials`),
the client options from the common flags, and :class:`Connections`: one
client and session per server and one tree per share for one command run
(``main`` opens them and closes them at the end).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, Iterator, Optional, Tuple

from .. import fs
from ..config import Dialect, DialectRange, TimeoutPolicy
from ..errors import SmbAuthError, SmbError
from ..records import FrozenRecord
from ..registry import get_client
from ..security.signing import HMAC_SHA256
from .words import UsageError

log = logging.getLogger("smblayer")

DEFAULT_PORT = 445


class SmbUrl(FrozenRecord):
    """``//host[:port]/share/path`` split up; ``path`` uses "/" and has no
    leading slash ("" is the share root)."""

    __slots__ = ("host", "port", "share", "path")

    def __init__(self, host: str, port: int, share: str, path: str) -> None:
        self._init(host, port, share, path)

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


class Credentials(FrozenRecord):
    """Who to authenticate as.  ``user`` "" is an anonymous session;
    ``password`` None lets Kerberos use the ticket cache (never shown)."""

    __slots__ = ("user", "password", "domain", "auth")
    _hidden = ("password",)

    def __init__(self, user: str, password: Optional[str], domain: Optional[str] = None,
                 auth: str = "negotiate") -> None:
        self._init(user, password, domain, auth)


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


def credentials(args) -> Credentials:
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
        import getpass      # here, as below: it loads termios (cold start)
        user = getpass.getuser()
    if password is None and not args.kerberos and not args.no_pass:
        password = os.environ.get("SMB_PASSWORD")
        if password is None and auth != "kerberos" and sys.stdin is not None and \
                sys.stdin.isatty():
            import getpass
            password = getpass.getpass(f"Password for {user}: ")
    args.credentials = Credentials(user, password, domain, auth)
    return args.credentials


def client_options(args) -> dict:
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
    options = {"dialects": DialectRange(lo, hi), "timeouts": timeouts}
    if not (args.sign or args.encrypt):
        # Signing is then only the session's last SESSION_SETUP response and
        # TREE_CONNECT (unless the server requires more): HMAC-SHA256 (hashlib)
        # there spares a one-shot command importing cryptography for AES-GMAC.
        options["signing_algorithms"] = (HMAC_SHA256,)
    return options


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
            self._clients[key] = get_client(url.host, url.port, **client_options(self.args),
                                            **posix)
        return self._clients[key]

    def session(self, url: SmbUrl) -> "fs.Session":
        key = (url.host, url.port)
        if key not in self._sessions:
            client = self.client(url)
            creds = credentials(self.args)
            log.info("connecting to %s:%d as %s", url.host, url.port,
                     creds.user or "anonymous")
            try:
                self._sessions[key] = fs.Session(
                    client, creds.user, creds.password, domain=creds.domain,
                    encrypt=self.args.encrypt, require_signing=True if self.args.sign else None,
                    auth_protocol=creds.auth, server_name=self._server_names.get(key),
                    allow_guest=not self.args.no_guest)
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
        return tree.root if isinstance(tree, fs.DfsTree) else tree

    def close(self) -> None:
        # LOGOFF first: it disconnects the session's trees in the same round
        # trip (Session.logoff); closing the trees then only drops our state.
        for session in self._sessions.values():
            try:
                session.logoff()
            except SmbError as exc:
                log.debug("logging off %r failed: %s", session, exc)
        for tree in self._trees.values():
            try:
                tree.close()
            except SmbError as exc:
                log.debug("closing %r failed: %s", tree, exc)
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


def smb_path(path: str) -> str:
    """A URL's path as a share path ("/" inside, none around)."""
    return path.strip("/")


def credentials_given(args) -> bool:
    """Whether the command line or the environment names credentials (no
    prompt needed to find out)."""
    return bool(args.user or args.auth_file or args.no_pass or args.kerberos or
                args.password is not None or os.environ.get("SMB_USER"))
