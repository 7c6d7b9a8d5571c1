"""(c) Thread-per-call FastAGI server: ``socketserver.ThreadingTCPServer``, the design wazo-agid uses.

One OS thread per call with blocking socket I/O; per call it reads the environment block, then
sends the same command list as the project's server, one command and one reply line at a time.
"""

from __future__ import annotations

import contextlib
import socketserver
import threading

from bench.agi_load import raise_fd_limit
from bench.peers.common import load_commands, parse_args


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096
    commands: list[bytes] = []


class Call(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, Server)
        rfile, wfile = self.rfile, self.wfile
        while rfile.readline() not in (b"\n", b""):
            pass
        for command in self.server.commands:
            wfile.write(command)
            line = rfile.readline()
            while line == b"HANGUP\n":
                line = rfile.readline()
            if not line:
                return


def main() -> None:
    args = parse_args(__doc__ or "")
    threading.stack_size(256 * 1024)  # wazo-agid runs with the default; keep many threads cheap
    server = Server((args.host, args.port), Call)
    server.commands = load_commands(args.commands)
    print(f"thread-per-call AGI listening port={server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    raise_fd_limit()
    main()
