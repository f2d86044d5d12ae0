"""A fault-injecting TCP proxy on 127.0.0.1, put between a primary and its S3 store.

Modes, switched at any moment by the trial: ``pass`` (forward both ways), ``refuse``
(new connections are closed at once, open ones are reset: the store is down), ``hang``
(connections are accepted and nothing is forwarded either way: a store that never
answers) and ``slow`` (every chunk is held ``delay`` seconds first: a slow link)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

MODES = ("pass", "refuse", "hang", "slow")


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.mode = "pass"
        self.delay = 0.2
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str, delay: float = 0.2) -> None:
        assert mode in MODES, mode
        self.mode, self.delay = mode, delay
        if mode == "refuse":
            self._reset_all()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self._reset_all()

    def _reset_all(self) -> None:
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            for chunk in self._chunks(source):
                while self.mode == "hang" and not self._closed:
                    time.sleep(0.01)
                if self.mode == "slow":
                    time.sleep(self.delay)
                if self.mode == "refuse":
                    break
                target.sendall(chunk)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _chunks(source: socket.socket) -> Iterator[bytes]:
        source.settimeout(None)
        while chunk := source.recv(65536):
            yield chunk
