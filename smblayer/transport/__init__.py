"""The sunrpc-like core of smblayer: one shared client per server and options.

See docs/architecture.rst for the modules, their interfaces and the threads.
Nothing is re-exported here: import from the module that owns a name (the
public names are re-exported by :mod:`smblayer`)."""
