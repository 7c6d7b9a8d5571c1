"""(c) Thread-per-call FastAGI server: ``socketserver.ThreadingTCPServer``, the design wazo-agid uses.

One OS thread per call with blocking socket I/O. Per call it reads the environment block, then
sends the same command lines the project's server sent for the walk, one command and one reply
line at a time, and (with ``--db``) keeps the same contact record the project's IVR keeps,
with the same transactions through blocking SQLAlchemy: open the contact (citizen + contact
row, one commit), one UPDATE of the menu path per step (``--steps``, one commit each), and
the final UPDATE plus the ``ivr_finished`` timeline event (one commit). The project's engine
itself is asyncio code and cannot run on a blocking channel, so its command sequence and its
database work are replicated instead.
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
from datetime import UTC, datetime

from bench.agi_load import raise_fd_limit
from bench.peers.common import load_commands, parse_args


class Records:
    """The IVR's contact record, written the same way (same rows, same commits), blocking."""

    def __init__(self, url: str, steps: int) -> None:
        from sqlalchemy import create_engine, event

        from ivr.db.database import _sqlite_pragmas
        from ivr.db.urls import sync_url

        self.steps = steps
        self.engine = create_engine(sync_url(url), pool_size=20, max_overflow=200, pool_timeout=120)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    def call(self, call_id: str, phone: str) -> None:
        from sqlalchemy import select, update
        from sqlalchemy.orm import Session

        from ivr.db.models import Channel, Citizen, Contact, ContactEvent
        from ivr.records import new_tracking_number

        with Session(self.engine) as session, session.begin():
            citizen = session.execute(select(Citizen).where(Citizen.identity_kind == "phone",
                                                            Citizen.identity == phone)).scalar_one_or_none()
            if citizen is None:
                citizen = Citizen(identity_kind="phone", identity=phone)
                session.add(citizen)
                session.flush()
            contact = session.execute(select(Contact).where(Contact.call_id == call_id)).scalar_one_or_none()
            if contact is None:
                contact = Contact(channel=Channel.voice, citizen_id=citizen.id, call_id=call_id,
                                  tracking_number=new_tracking_number(), language="ko", ivr_path="")
                session.add(contact)
                session.flush()
            contact_id = contact.id
        path: list[str] = []
        for step in range(self.steps):
            path.append(f"step{step}")
            with Session(self.engine) as session, session.begin():
                session.execute(update(Contact).where(Contact.id == contact_id)
                                .values(ivr_path=" > ".join(path), updated_at=datetime.now(UTC)))
        with Session(self.engine) as session, session.begin():
            session.execute(update(Contact).where(Contact.id == contact_id).values(
                queue="general-ko", topic="transport", updated_at=datetime.now(UTC)))
            session.add(ContactEvent(contact_id=contact_id, kind="ivr_finished", source="ivr",
                                     external_id=f"ivr:{contact_id}:finished", data={"result": "queue"}))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096
    commands: list[bytes] = []
    records: Records | None = None


class Call(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, Server)
        rfile, wfile = self.rfile, self.wfile
        env: dict[bytes, bytes] = {}
        while (line := rfile.readline()) not in (b"\n", b""):
            key, _, value = line.partition(b":")
            env[key] = value.strip()
        records = self.server.records
        for n, command in enumerate(self.server.commands):
            if records is not None and n == 2:  # where the IVR opens the contact (after the linkedid)
                records.call(env.get(b"agi_uniqueid", b"").decode(), env.get(b"agi_callerid", b"").decode())
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
    if args.db:
        server.records = Records(args.db, args.steps)
    print(f"thread-per-call AGI listening port={server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    raise_fd_limit()
    main()
