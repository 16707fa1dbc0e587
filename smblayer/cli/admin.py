"""The command line's administrators' commands: ``acl`` (a file's ACL in
smbcacls' format: show, change; ``--snapshots`` lists previous versions)
and ``get --snapshot`` (one file as it was in a previous version).

Theory of operation: each command opens one tree (``open_tree``) and calls
the Tree's administrators' API (``smblayer.fs.admin``); the text format is
``smblayer.proto.security``'s (``to_smbcacls``, ``ace_from_smbcacls``), so
what is printed here reads back with smbcacls and the other way round.
"""
from __future__ import annotations

import logging
import os
import posixpath
from typing import List, Optional, Sequence

from ..fs import transfer
from ..proto import security
from .connections import SmbUrl, open_tree, parse_url, smb_path
from .files import stdout
from .progress import new_bar
from .words import UsageError, has_wildcard

log = logging.getLogger("smblayer")


def cmd_acl(args) -> int:
    """Show or change a remote file's ACL in smbcacls' format."""
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        path = smb_path(url.path)
        if args.snapshots:
            for token in tree.snapshots(path):
                print(token)
            return 0
        changes = args.add or args.delete or args.modify or args.set is not None
        sd = tree.get_security(path, info=("dacl",) if changes else
                               ("owner", "group", "dacl"))
        if not changes:
            print(sd.to_sddl() if args.sddl else security.to_smbcacls(sd, args.numeric),
                  end="\n" if args.sddl else "")
            return 0
        try:
            add, delete, modify, replace = [
                [security.ace_from_smbcacls(t) for t in _acl_list(texts)]
                for texts in (args.add, args.delete, args.modify, [args.set or ""])]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        aces = replace if args.set is not None else list(sd.dacl or ())
        for ace in delete:
            if ace not in aces:
                raise UsageError(f"acl --delete: no ACE {security.ace_to_smbcacls(ace)}")
            aces.remove(ace)
        for ace in modify:
            same = [i for i, a in enumerate(aces) if a.sid == ace.sid and a.type == ace.type]
            if not same:
                raise UsageError(f"acl --modify: no ACE for {ace.sid}")
            aces[same[0]] = ace
        aces.extend(a for a in add if a not in aces)
        tree.set_security(path, security.SecurityDescriptor(dacl=aces), info=("dacl",))
    return 0


def _acl_list(texts: Sequence[str]) -> List[str]:
    """ACE texts from options that may each hold several, comma separated."""
    return [t.strip() for text in texts for t in text.split(",") if t.strip()]


def get_snapshot(args, url: SmbUrl, dest: Optional[str], count: int) -> int:
    """get --snapshot TOKEN: one file as it was in that previous version."""
    if args.recursive or args.resume or args.verify or count > 1 or has_wildcard(url.path):
        raise UsageError("get --snapshot takes one file, without -r, --continue or --verify")
    path = smb_path(url.path)
    name = posixpath.basename(path)
    with open_tree(args, url) as tree:
        with transfer.closing(tree.open(path, "rb", buffering=0,
                                        snapshot=args.snapshot)) as f:
            with new_bar(args, name, f.handle.info.size) as bar:
                if dest == "-":
                    n = transfer.receive(tree, f, stdout(), progress=bar.update)
                    stdout().flush()
                else:
                    target = dest if dest is not None else name
                    if os.path.isdir(target):
                        target = os.path.join(target, name)
                    with transfer.local_temp(target) as local:
                        n = transfer.receive(tree, f, local, progress=bar.update)
    log.info("get: %d bytes from %s as of %s", n, url, args.snapshot)
    return 0
