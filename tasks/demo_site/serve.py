"""Serve a directory (the demo site) over HTTP on 127.0.0.1, quietly, for as long as a `with` block lasts."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger("gristmill.demo_site")


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files, logged to our logger at debug level instead of stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("demo site %s - " + format, self.address_string(), *args)


@contextmanager
def serve_directory(root: Path, port: int = 0) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 in a daemon thread; yield its base URL, ending in /.

    `port` 0 takes an ephemeral port; a given port that is taken falls back to an ephemeral one.
    """
    handler = functools.partial(_QuietHandler, directory=str(root))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with serve_in_thread(server, "gristmill-demo-site") as base:
        yield base


@contextmanager
def serve_in_thread(server: ThreadingHTTPServer, name: str = "http-server") -> Iterator[str]:
    """Run `server` (bound to 127.0.0.1) in a daemon thread for the block; yield its base URL, ending in /."""
    server.daemon_threads = True  # a stuck client must not keep the process alive
    # A short poll interval makes shutdown() quick (the default 0.5 s is paid on every exit).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
