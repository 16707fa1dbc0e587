"""Test helpers for smblayer and the packages built on it.

* :class:`~smblayer.testing.samba.SambaServer` - a private Samba smbd
* :class:`~smblayer.testing.addc.SambaAdDc` - a private Samba AD domain
  controller (Kerberos)
* :class:`~smblayer.testing.proxy.FaultProxy` - a fault-injecting TCP proxy
* :class:`~smblayer.testing.capture.FrameLog` - records the SMB headers a
  FaultProxy forwards (``proxy.tap(log)``)
* :class:`~smblayer.testing.link.Link` - a link emulator: a TCP relay that
  paces each connection (``LinkProcess``: the same in a child process)
* :class:`~smblayer.testing.process.PythonChild` - a bounded Python
  subprocess; :func:`~smblayer.testing.process.frozen` - SIGSTOP/SIGCONT
* :mod:`smblayer.testing.pytest_plugin` - fixtures ``samba``, ``samba_nt1``,
  ``samba_smb3``, ``samba_ad_dc`` and ``samba_factory``

Imports are lazy so that ``import smblayer.testing`` stays cheap and does not
pull in pytest.
"""

__all__ = ["SambaServer", "SambaAdDc", "FaultProxy", "find_smbd", "FrameLog", "PythonChild",
           "frozen", "Link", "LinkProcess"]

_LAZY = {
    "SambaServer": ("smblayer.testing.samba", "SambaServer"),
    "find_smbd": ("smblayer.testing.samba", "find_smbd"),
    "SambaAdDc": ("smblayer.testing.addc", "SambaAdDc"),
    "FaultProxy": ("smblayer.testing.proxy", "FaultProxy"),
    "FrameLog": ("smblayer.testing.capture", "FrameLog"),
    "PythonChild": ("smblayer.testing.process", "PythonChild"),
    "frozen": ("smblayer.testing.process", "frozen"),
    "Link": ("smblayer.testing.link", "Link"),
    "LinkProcess": ("smblayer.testing.link", "LinkProcess"),
}


def __getattr__(name):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(
            "module %r has no attribute %r" % (__name__, name)) from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
