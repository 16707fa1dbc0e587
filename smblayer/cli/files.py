"""The commands on remote names: echo, ls (and the share list), stat,
cat, rm, mkdir, rmdir, mv, du, df, watch and cp; and wildcard expansion
(:func:`expand`, on ``Tree.glob``), which get and put use too.
"""
from __future__ import annotations

import contextlib
import errno
import posixpath
import stat
import sys
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import BinaryIO, Dict, Iterator, List, Tuple

from .. import fs
from ..errors import status_error
from ..fs.ops import filetime_to_unix
from ..proto.status import NtStatus
from .connections import (Connections, SmbUrl, client_options, credentials, credentials_given,
                          open_tree, parse_url, smb_path)
from .progress import format_bytes
from .words import UsageError, has_wildcard


def stdout() -> BinaryIO:
    """Where cat and ``get ... -`` write."""
    return sys.stdout.buffer


# ---------------------------------------------------------------------------
# remote names: wildcards and trees


def isdir(st) -> bool:
    return stat.S_ISDIR(st.st_mode)


def is_remote_dir(tree, path: str) -> bool:
    return not path or tree.isdir(path)


def expand(tree, path: str, url: SmbUrl) -> List[Tuple[str, object]]:
    """(path, stat) of each remote path matching ``path``, whose components
    may hold ``*`` and ``?`` (``Tree.glob``, dot names included, each
    match's stat from the directory query that found it: get needs sizes
    and times, rm the type); a plain path is just stat'ed.  Nothing there:
    FileNotFoundError."""
    if not has_wildcard(path):
        return [(path, tree.stat(path))]
    # "[" is no wildcard on this command line: "[[]" matches it literally
    found = tree.glob_entries(path.replace("[", "[[]"), include_hidden=True)
    if not found:
        raise status_error(NtStatus.NO_SUCH_FILE, "QUERY_DIRECTORY", str(url.with_path(path)))
    return sorted(((e.path, e.stat()) for e in found), key=lambda r: r[0].lower())


def _raise(exc: BaseException) -> None:
    raise exc


def walk(tree, top: str):
    """Tree.walk_entries, top-down, failing on a directory it cannot list
    (a copy must not skip it silently)."""
    return tree.walk_entries(top, onerror=_raise)


def each_remote(args) -> Iterator[Tuple["fs.Tree", str, SmbUrl]]:
    """(tree, path, url) for each URL argument (trees shared per share)."""
    for text in args.urls:
        args.current_url = text
        url = parse_url(text)
        with open_tree(args, url) as tree:
            yield tree, smb_path(url.path), url


# ---------------------------------------------------------------------------
# echo, ls, stat


def cmd_echo(args) -> int:
    """ECHO round trips.  With credentials the echoes go inside a session
    (signed with its key), as smbclient's: some servers refuse an ECHO with
    SessionId 0."""
    url = parse_url(args.url, need_share=False)
    with Connections(args) as connections:
        client = connections.client(url)
        if credentials_given(args):
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
            import statistics
            us = sorted(t * 1e6 for t in times)
            print(f"{len(us)} echoes: min {us[0]:.0f} µs, median {statistics.median(us):.0f} µs, "
                  f"max {us[-1]:.0f} µs")
    return 0


def _long_line(name: str, st, posix: bool = False) -> str:
    """``ls -l``: with the SMB3 POSIX extensions (--posix) the mode and the
    owner's and group's ids as the server gives them."""
    kind = "d" if isdir(st) else "-"
    mtime = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    if posix:
        kind = f"{stat.filemode(st.st_mode)} {st.st_nlink:>3} {st.st_uid:>6} {st.st_gid:>6}"
    return f"{kind} {st.st_size:>12} {mtime} {name}{'/' if isdir(st) else ''}"


def cmd_ls(args) -> int:
    if not parse_url(args.url, need_share=False).share:
        return cmd_ls_shares(args)
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        path = smb_path(url.path)
        # (name, FileInfo or stat): a stat is made only for ``ls -l`` (2,000
        # of them cost more than the listing's round trip at 10 ms)
        listing: List[Tuple[str, object]]
        if has_wildcard(path):
            listing = [(posixpath.basename(p), st) for p, st in expand(tree, path, url)]
        else:
            # "dir/" names a directory: listed without asking first
            named_dir = args.url.replace("\\", "/").endswith("/")
            info = tree.file_info(path) if path and not named_dir else None
            if info is not None and not info.is_dir:
                listing = [(posixpath.basename(path), info)]
            else:
                listing = [(e.name, e.info) for e in tree.scandir(path)
                           if args.all or not e.name.startswith(".")]
        posix = getattr(tree, "posix", False)
        for name, entry in sorted(listing, key=lambda e: e[0].lower()):
            if args.long:
                print(_long_line(name, entry.to_stat() if isinstance(entry, fs.FileInfo)
                                 else entry, posix))
            else:
                kind = entry.is_dir if isinstance(entry, fs.FileInfo) else isdir(entry)
                print(name + ("/" if kind else ""))
    return 0


def cmd_stat(args) -> int:
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        info = tree.file_info(smb_path(url.path))
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
# cat, rm, mkdir, rmdir, mv, du, df


def cmd_cat(args) -> int:
    from ..fs import transfer     # here: ls and stat need no copy engine (cold start)
    urls = [parse_url(u) for u in args.urls]
    out = stdout()
    for text, url in zip(args.urls, urls):
        args.current_url = text
        with open_tree(args, url) as tree:
            transfer.download(tree, smb_path(url.path), out)
        out.flush()
    return 0


def cmd_rm(args) -> int:
    for tree, path, url in each_remote(args):
        if not path:
            raise UsageError(f"rm: refusing to remove the share root {url}")
        try:
            matches = expand(tree, path, url)
        except (FileNotFoundError, NotADirectoryError):
            if args.force:
                continue
            raise
        for match, st in matches:
            args.current_url = str(url.with_path(match))
            try:
                if not isdir(st):
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
    for tree, path, _url in each_remote(args):
        if not args.parents:
            tree.mkdir(path)
            continue
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                tree.mkdir(sub)
            except FileExistsError:
                if not is_remote_dir(tree, sub):
                    raise
    return 0


def cmd_rmdir(args) -> int:
    for tree, path, _url in each_remote(args):
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
        source, target = smb_path(url.path), smb_path(new_path)
        if is_remote_dir(tree, target):       # like mv: into an existing directory
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

    for tree, path, url in each_remote(args):
        totals: Dict[str, int] = {}
        order: List[str] = []
        for dirpath, _dirs, files in walk(tree, path) if is_remote_dir(tree, path) else ():
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
    for tree, _path, url in each_remote(args):
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
# share listing, watch, server-side copy (smblayer.rpc, Tree.watch, Tree.copy)


def cmd_ls_shares(args) -> int:
    """``ls //host[:port]``: the shares, like ``smbclient -L``."""
    url = parse_url(args.url, need_share=False)
    cred = credentials(args)
    try:
        shares = fs.list_shares(url.host, cred.user, cred.password, port=url.port,
                                encrypt=args.encrypt, domain=cred.domain,
                                auth_protocol=cred.auth,
                                require_signing=True if args.sign else None,
                                allow_guest=not args.no_guest, **client_options(args))
    except FileNotFoundError as exc:
        exc.hint = "the server serves no share list (no srvsvc pipe on IPC$)"
        raise
    print(f"{'Sharename':<15} {'Type':<9} Comment")
    print(f"{'---------':<15} {'----':<9} -------")
    for share in shares:
        print(f"{share.name:<15} {share.kind:<9} {share.comment}".rstrip())
    return 0


def cmd_watch(args) -> int:
    """Print change notifications ("action path") until interrupted."""
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        with tree.watch(smb_path(url.path), recursive=args.recursive) as watch:
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
        path = smb_path(dst.path)
        if not path or dtree.isdir(path):
            path = posixpath.join(path, posixpath.basename(smb_path(src.path)))
        stree.copy(smb_path(src.path), path, dst_tree=dtree)
    return 0
