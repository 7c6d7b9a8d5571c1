"""(d) The ceiling: a bare asyncio FastAGI server that sends a fixed command list and nothing else.

Per call it waits for the end of the environment block, then writes each command and waits for
its one-line reply, then closes, as the project's server does at the end of the IVR. It is an
``asyncio.Protocol`` (no streams, no coroutine per call, no parsing beyond counting lines): what
is left is the event loop and the kernel's loopback, i.e. the most an asyncio server in Python
can do on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import cast

from bench.agi_load import raise_fd_limit
from bench.peers.common import load_commands, parse_args
from ivr.up import loop_factory, loop_name


class Call(asyncio.Protocol):
    commands: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.buffer = b""
        self.in_env = True
        self.next = 0

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.in_env:
            end = self.buffer.find(b"\n\n")
            if end < 0:
                return
            self.buffer = self.buffer[end + 2 :]
            self.in_env = False
            self._send()
        while True:
            nl = self.buffer.find(b"\n")
            if nl < 0:
                return
            line, self.buffer = self.buffer[:nl], self.buffer[nl + 1 :]
            if line == b"HANGUP":
                continue
            self._send()

    def _send(self) -> None:
        if self.next < len(self.commands):
            self.transport.write(self.commands[self.next])
            self.next += 1
        else:
            self.transport.close()


async def main(args: argparse.Namespace) -> None:
    Call.commands = load_commands(args.commands)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Call, args.host, args.port, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"bare asyncio AGI on {loop_name()} listening port={port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    raise_fd_limit()
    arguments = parse_args(__doc__ or "")
    # The same event loop as the project's server (``event_loop``), so (d) is its ceiling.
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory(arguments.loop)) as runner:
        runner.run(main(arguments))
