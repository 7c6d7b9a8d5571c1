"""An AMI peer in its own process that floods the bridge with many captured calls.

It runs ``tests.support.ami_peer.AmiPeer`` (Asterisk 22's banner, login, resync answers), prints its
port, waits for the bridge to log in, then, when a line arrives on stdin, sends the events of
the ``answered`` capture retargeted to ``--calls`` distinct calls, in the captured TCP
chunking, as fast as the socket takes them. It prints ``sent=<events>`` when done.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from ivr.ami.protocol import event_messages, load_dialog, retarget, unsolicited_chunks
from tests.support.ami_peer import AmiPeer
from tests.support.data import CAPTURES

CAPTURE = CAPTURES / "answered" / "ami.dialog.log"
# Only what a running Asterisk sends per call (the login-time events are the session's own).
_SESSION_EVENTS = (b"Event: SuccessfulAuth", b"Event: FullyBooted")


def call_chunks(calls: int, base: int = 1800000000) -> list[bytes]:
    template = [c for c in unsolicited_chunks(load_dialog(CAPTURE))]
    template = [b"".join(m + b"\r\n\r\n" for m in c.split(b"\r\n\r\n") if m and not m.startswith(_SESSION_EVENTS))
                for c in template]
    template = [c for c in template if c]
    out: list[bytes] = []
    for n in range(calls):
        out += retarget(template, {
            "1795593159.8": f"{base + n}.{2 * n}",
            "1795593165.9": f"{base + n}.{2 * n + 1}",
            "caller-00000008": f"caller-{2 * n:08x}",
            "agent1001-00000009": f"agent1001-{2 * n + 1:08x}",
            "0cb2ccb1-b01e-4419-bc6c-5e02cd1eaeab": str(uuid.UUID(int=n)),
        })
    return out


def count_events(chunks: list[bytes]) -> int:
    return len(event_messages(chunks))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--username", default="dasan")
    parser.add_argument("--secret", required=True, help="the AMI secret clients log in with")
    args = parser.parse_args()
    chunks = call_chunks(args.calls)
    events = count_events(chunks)  # counted now: not while the bridge is being measured
    peer = AmiPeer(args.username, args.secret)
    port = await peer.start()
    print(f"ami peer port={port}", flush=True)
    await peer.wait_login(1, timeout=60)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    await peer.play(chunks)
    print(f"sent={events}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    await peer.close()


if __name__ == "__main__":
    asyncio.run(main())
