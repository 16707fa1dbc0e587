"""A tiny loopback echo server for the relay tests (FaultProxy, Link): a
thread per connection, each bounded (20 s without data ends it)."""
import contextlib
import socketserver
import threading
from typing import Iterator, Tuple


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(20)  # bounded: a stuck test cannot pin the thread
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                sock.sendall(data)
        except OSError:
            return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


def serve(handler):
    """Start ``handler`` on 127.0.0.1 (any port): (server, its thread)."""
    srv = Server(("127.0.0.1", 0), handler)
    srv.stop_event = threading.Event()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         name="test-%s" % handler.__name__, daemon=True)
    t.start()
    return srv, t


def stop(srv, t) -> None:
    srv.stop_event.set()
    srv.shutdown()
    srv.server_close()
    t.join(5)


@contextlib.contextmanager
def echo_server() -> Iterator[Tuple[str, int]]:
    """An echo server's (host, port) while the block runs."""
    srv, t = serve(_EchoHandler)
    try:
        yield srv.server_address
    finally:
        stop(srv, t)
