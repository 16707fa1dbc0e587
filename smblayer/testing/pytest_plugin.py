"""pytest plugin: private Samba servers as fixtures.

Registered as the ``smblayer`` pytest11 entry point; without the installed
package use ``pytest -p smblayer.testing.pytest_plugin``.

Fixtures:

``samba``          session-scoped :class:`SambaServer`, dialects NT1..SMB3_11
``samba_nt1``      session-scoped, SMB1 only (min = max = NT1)
``samba_smb3``     session-scoped, SMB3 only (SMB3_00..SMB3_11)
``samba_durable``  session-scoped, NT1..SMB3_11, configured to grant durable
                   handles (``samba.DURABLE_OPTIONS``)
``samba_ad_dc``    session-scoped :class:`~smblayer.testing.addc.SambaAdDc`, a
                   Samba AD domain controller (Kerberos KDC + smbd) with its
                   own krb5.conf and ticket cache (``dc.environ()``)
``samba_dfs``      session-scoped :class:`~smblayer.testing.dfs.DfsNamespace`: a
                   standalone DFS namespace (``msdfs root`` share ``dfs``
                   with links to a share, a second server, dead targets)
``samba_422``, ``samba_422_durable``, ``samba_422_dfs``
                   the same as ``samba``, ``samba_durable`` and ``samba_dfs``
                   but Samba 4.22 from a Debian 13 root
                   (:mod:`smblayer.testing.chroot`); ``samba_422`` also speaks
                   the SMB3 POSIX extensions (``smb3 unix extensions = yes``:
                   4.22 decides at NEGOTIATE by the global value) on every
                   share, and has a share ``posix``.
                   Without the root they skip naming the missing piece (fail
                   under ``CI=true``).  ``samba_root`` is the root's path.
``samba_factory``  function-scoped callable ``factory(**SambaServer kwargs)``
                   returning a fresh, started server; every server it made is
                   stopped at teardown (for tests that kill or stop smbd).

When smbd is not installed (PATH, /usr/sbin) the fixtures skip the test, but
under ``CI=true`` they fail it, so a CI image missing Samba cannot pass green.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Iterator, List

import pytest

from smblayer.testing.chroot import default_root, root_problem
from smblayer.testing.samba import DURABLE_OPTIONS, SambaServer, find_smbd

_MISSING = ("Samba's smbd was not found on PATH or in /usr/sbin; install the "
            "'samba' package (Debian/Ubuntu: apt-get install samba smbclient) "
            "to run the Samba integration tests")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_smbd() -> str:
    """Return smbd's path, or skip (fail under CI=true) the current test."""
    path = find_smbd()
    if path is None:
        if _in_ci():
            pytest.fail(_MISSING + " (CI=true: a missing smbd is an error)",
                        pytrace=False)
        pytest.skip(_MISSING)
    return path


def require_samba_root() -> str:
    """Return the Debian 13 Samba root's path, or skip (fail under CI=true)
    the current test naming what is missing."""
    problem = root_problem()
    if problem is not None:
        if _in_ci():
            pytest.fail("Samba 4.22: " + problem + " (CI=true: a missing root is an error)",
                        pytrace=False)
        pytest.skip("Samba 4.22: " + problem)
    return default_root()


#: Parameters of a fixture that runs a module on both servers (:func:`on_both`).
SERVERS = ("4.17", "4.22")


def on_both(request, server_417, fixture_422: str):
    """Body of a module-level fixture that overrides ``samba`` (or another
    4.17 fixture) to run that module's tests on both servers::

        @pytest.fixture(scope="module", params=SERVERS)
        def samba(request, samba):
            return on_both(request, samba, "samba_422")
    """
    return server_417 if request.param == "4.17" else request.getfixturevalue(fixture_422)


#: The share ``samba_422`` adds for the SMB3 POSIX extensions.
POSIX_SHARE = {"read only": "no", "smb3 unix extensions": "yes"}


class _EntryPointAlias:
    """Stands in for the ``smblayer`` pytest11 entry point when this module
    was already loaded with ``-p smblayer.testing.pytest_plugin``.

    pytest refuses to register one module under two names, so without it
    ``-p smblayer.testing.pytest_plugin`` fails once the package is installed
    (the entry point then loads the same module as "smblayer")."""


def pytest_plugin_registered(plugin, manager) -> None:
    if plugin is not sys.modules.get(__name__):
        return
    if manager.get_name(plugin) == "smblayer":
        return
    if manager.get_plugin("smblayer") is None and not manager.is_blocked("smblayer"):
        manager.register(_EntryPointAlias(), name="smblayer")


_KRB5_ISOLATION = """[libdefaults]
	default_realm = SMBLAYER-TESTS.INVALID
	dns_lookup_realm = false
	dns_lookup_kdc = false
	rdns = false
	dns_canonicalize_hostname = false
"""


def _isolate_kerberos(config) -> None:
    """Keep the tests off the machine's Kerberos set-up: a krb5.conf with no
    KDC and an empty ticket cache, unless the caller set KRB5_CONFIG.  With
    pyspnego's Kerberos installed, every "negotiate" logon first tries
    Kerberos; with /etc/krb5.conf (Debian: ATHENA.MIT.EDU) that would ask a
    KDC on the Internet before NTLM.  The AD DC fixture sets its own."""
    if "KRB5_CONFIG" in os.environ:
        return
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="smbl-krb5-")
    path = os.path.join(tmp, "krb5.conf")
    with open(path, "w") as f:
        f.write(_KRB5_ISOLATION)
    os.environ["KRB5_CONFIG"] = path
    os.environ.setdefault("KRB5CCNAME", "FILE:" + os.path.join(tmp, "ccache"))
    config.add_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))


def pytest_configure(config) -> None:
    _isolate_kerberos(config)
    config.addinivalue_line(
        "markers",
        "integration: needs a real Samba smbd (started privately by the fixture)")
    config.addinivalue_line(
        "markers", "fault: fault injection against loopback servers")


def _session_server(**kwargs) -> Iterator[SambaServer]:
    require_smbd()
    server = SambaServer(**kwargs)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def samba() -> Iterator[SambaServer]:
    """Private smbd allowing NT1 (SMB1) up to SMB3_11."""
    yield from _session_server(min_protocol="NT1", max_protocol="SMB3_11")


@pytest.fixture(scope="session")
def samba_nt1() -> Iterator[SambaServer]:
    """Private smbd speaking SMB1 (NT LM 0.12) only."""
    yield from _session_server(min_protocol="NT1", max_protocol="NT1")


@pytest.fixture(scope="session")
def samba_smb3() -> Iterator[SambaServer]:
    """Private smbd speaking SMB 3.0 .. 3.1.1 only."""
    yield from _session_server(min_protocol="SMB3", max_protocol="SMB3_11")


@pytest.fixture(scope="session")
def samba_durable() -> Iterator[SambaServer]:
    """Private smbd (NT1..SMB3_11) that grants durable handles."""
    yield from _session_server(min_protocol="NT1", max_protocol="SMB3_11",
                               extra_global=DURABLE_OPTIONS)


@pytest.fixture(scope="session")
def samba_admin():
    """Private smbd (NT1..SMB3_11, durable handles) with an ``admin`` share:
    NT ACLs (acl_xattr), streams (streams_xattr), previous versions
    (shadow_copy2): a :class:`smblayer.testing.admin.AdminSamba`."""
    from smblayer.testing.admin import AdminSamba
    require_smbd()
    with AdminSamba() as admin:
        yield admin


@pytest.fixture(scope="session")
def samba_root() -> str:
    """Path of the Debian 13 root Samba 4.22 runs from."""
    return require_samba_root()


@pytest.fixture(scope="session")
def samba_422(samba_root) -> Iterator[SambaServer]:
    """Private Samba 4.22 (NT1..SMB3_11) from the Debian 13 root; share
    ``posix`` speaks the SMB3 POSIX extensions."""
    yield from _session_server(min_protocol="NT1", max_protocol="SMB3_11", root=samba_root,
                               extra_global={"smb3 unix extensions": "yes"},
                               extra_shares={"posix": POSIX_SHARE})


@pytest.fixture(scope="session")
def samba_422_durable(samba_root) -> Iterator[SambaServer]:
    """Private Samba 4.22 (NT1..SMB3_11) that grants durable handles."""
    yield from _session_server(min_protocol="NT1", max_protocol="SMB3_11",
                               extra_global=DURABLE_OPTIONS, root=samba_root)


@pytest.fixture(scope="session")
def samba_422_dfs(samba_root):
    """``samba_dfs`` with both servers Samba 4.22."""
    from smblayer.testing.dfs import DfsNamespace
    with DfsNamespace(root=samba_root) as ns:
        yield ns


_DC_MISSING = ("a Samba AD DC and Kerberos are needed: apt-get install samba-ad-dc "
               "samba-ad-provision krb5-user libkrb5-dev, pip install 'smblayer[kerberos]'")


def require_addc() -> None:
    """Skip (fail under CI=true) unless the AD DC packages and pyspnego's
    Kerberos support are installed."""
    from smblayer.security import kerberos_available
    from smblayer.testing.addc import provision_available, find_kinit, find_samba
    missing = [what for what, ok in (
        ("samba (samba-ad-dc)", find_samba() is not None),
        ("samba-ad-provision", provision_available()),
        ("kinit (krb5-user)", find_kinit() is not None),
        ("pyspnego[kerberos]", kerberos_available())) if not ok]
    if missing:
        text = f"{_DC_MISSING} (missing: {', '.join(missing)})"
        if _in_ci():
            pytest.fail(text + " (CI=true: a missing DC is an error)", pytrace=False)
        pytest.skip(text)


@pytest.fixture(scope="session")
def samba_ad_dc():
    """A private Samba AD DC (realm SMBL.TEST, user ``alice``), provisioned
    once per session in a temporary directory and stopped by pid."""
    from smblayer.testing.addc import SambaAdDc
    require_smbd()
    require_addc()
    dc = SambaAdDc()
    try:
        dc.start()
    except Exception:
        dc.stop()
        raise
    try:
        yield dc
    finally:
        dc.stop()


@pytest.fixture(scope="session")
def samba_dfs():
    """A DFS namespace on a private smbd plus a second smbd as a link target."""
    from smblayer.testing.dfs import DfsNamespace
    require_smbd()
    with DfsNamespace() as ns:
        yield ns


@pytest.fixture
def samba_factory() -> Iterator[Callable[..., SambaServer]]:
    """Build fresh private servers for one test: ``samba_factory(**kwargs)``
    takes :class:`SambaServer`'s arguments and returns it started."""
    require_smbd()
    servers: List[SambaServer] = []

    def factory(**kwargs) -> SambaServer:
        server = SambaServer(**kwargs)
        servers.append(server)
        return server.start()

    try:
        yield factory
    finally:
        errors = []
        for server in reversed(servers):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]
