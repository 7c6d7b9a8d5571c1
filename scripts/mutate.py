"""Mutation testing of the control and security modules with mutmut 3 (``make mutate``).

Each module is mutated on its own, in its own copy of the project under ``var/mutate/<name>/``
(mutmut writes its ``mutants/`` tree and results there, never into the working tree), and only
the tests listed for it here run: mutmut then picks, per mutant, the tests that reached the
mutated function. At the end a table gives each module's score: killed (a test failed, timed
out or mypy refused the mutant) over all mutants less the ones docs/testing.md lists as
equivalent, each with its reason. Survivors are printed by name; ``cd var/mutate/<name> &&
../../../.venv/bin/mutmut show <mutant>`` shows the change.

Usage: python scripts/mutate.py [MODULE_PATH ...]   (default: every module below)
The copy is the committed tree (HEAD), so edits in progress elsewhere do not break a run.
Environment: MUTATE_CHILDREN (parallel mutants, default 1), MUTATE_TIMEOUT (seconds per
module, default none), MUTATE_OVERLAY (paths taken from the working tree instead, e.g. the
test file being written to kill survivors), MUTATE_MODE: ``run`` (default: the mutants without
a result yet, so a stopped run goes on where it stopped), ``survivors`` (check the mutants that
were not killed again, e.g. after adding tests) or ``report`` (only print the table).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "mutate"
MUTMUT = Path(sys.executable).parent / "mutmut"
GOAL = 85.0

# Module -> the narrowest tests that exercise it (mutmut runs, per mutant, the ones among
# these that reached the mutated function).
MODULES: dict[str, list[str]] = {
    "ivr/messaging/providers/generic.py": ["tests/test_messaging_signatures.py", "tests/test_messaging_sms.py",
                                           "tests/test_messaging_sns.py"],
    "ivr/messaging/providers/twilio.py": ["tests/test_messaging_signatures.py", "tests/test_messaging_sms.py",
                                          "tests/test_security_low.py::test_mms_media_redirects_are_checked_at_every_hop"],
    "ivr/web/limits.py": ["tests/test_messaging_limits.py", "tests/test_web_limits.py"],
    "ivr/records.py": ["tests/test_records.py", "tests/test_json_rows.py",
                       "tests/test_db.py::test_concurrent_first_contacts_create_one_citizen",
                       "tests/test_db.py::test_tracking_numbers_stay_unique_when_a_draw_is_taken"],
    "ivr/engine/engine.py": ["tests/test_engine_menus.py", "tests/test_engine_loader.py"],
    "ivr/web/auth.py": ["tests/test_security_sessions.py", "tests/test_access_routes.py",
                        "tests/test_console_api.py::test_language_switch_is_kept_per_user"],
    "ivr/console/agent.py": ["tests/test_console_contact_json.py",
                             "tests/test_console_api.py::test_record_is_saved_and_guarded",
                             "tests/test_console_api.py::test_agent_state_commands_go_to_the_bridge",
                             "tests/test_console_api.py::test_agent_socket_carries_only_my_screen_pops_and_state",
                             "tests/test_security_access.py::test_agents_reach_only_their_own_and_their_queues_contacts",
                             "tests/test_security_injection.py::test_pause_reason_with_line_breaks_is_refused_and_nothing_reaches_asterisk"],
    "ivr/ami/agents.py": ["tests/test_ami_agents.py",
                          "tests/test_security_injection.py::test_agent_job_with_line_breaks_sends_nothing_and_the_bridge_goes_on",
                          "tests/test_security_injection.py::test_a_stored_reason_with_line_breaks_does_not_stop_a_restore",
                          "tests/test_supervise.py::test_originate_rings_the_supervisor_into_chanspy_on_the_agent"],
    "ivr/ami/callbacks.py": ["tests/test_ami_callbacks.py",
                             # take_over and the race for a request, in-process on PostgreSQL
                             "tests/test_cluster_handover.py::test_a_dead_nodes_callback_whose_call_was_placed_is_not_dialled_again",
                             "tests/test_cluster_handover.py::test_nodes_racing_for_one_callback_dial_it_once"],
    "ivr/messaging/chat.py": ["tests/test_messaging_chat.py", "tests/test_security_chat.py"],
    "ivr/ami/wire.py": ["tests/test_wire_encoders.py", "tests/test_security_injection.py"],
    "ivr/agi/wire.py": ["tests/test_wire_encoders.py", "tests/test_security_injection.py",
                        "tests/test_agi_protocol.py"],
}
# Extra pytest arguments for every run of a module's tests (narrower still where a slow
# parametrization adds nothing for that module).
PYTEST_ARGS: dict[str, list[str]] = {
    # SQLite, and on PostgreSQL only what differs there: row locks (none on SQLite), the order
    # of ties (SQLite's index always gives the later row first), and column names in ON
    # CONFLICT and RETURNING (SQLite ignores their case).
    "ivr/records.py": ["-k", "not postgresql or lock_contacts or tie or newest_first or record_event"
                             " or insert_citizens or insert_contacts or batch_of_calls"],
    # The same code on each database and bus: one of each is enough to tell a mutant.
    "ivr/messaging/providers/generic.py": ["-k", "not postgresql"],
    "ivr/messaging/providers/twilio.py": ["-k", "not postgresql"],
    "ivr/messaging/chat.py": ["-k", "not postgresql and not redis"],
    # (the CLI tests run the code in a subprocess, where mutmut cannot see which function they reach)
    "ivr/ami/agents.py": ["-k", "not postgresql and not redis and not cli"],
    "ivr/ami/callbacks.py": ["-k", "not postgresql"],
    "ivr/console/agent.py": ["-k", "not postgresql"],
    # (the throttle tests run on a clock they move themselves, ctx.monotonic: no wall-clock window)
    "ivr/web/auth.py": ["-k", "not postgresql"],
    # One database for the module's shared fixture (mutmut runs the tests in its own order).
    "ivr/engine/engine.py": ["-k", "not postgresql"],
}
# What the tests read besides ivr/ and tests/ (menus, queues and templates ship inside ivr/).
ALSO_COPY = ["agi_scripts", "dasan.example.yaml"]
KILLED = {"killed", "timeout", "caught by type check"}
EQUIVALENT = re.compile(r"^- `(ivr\.\S+__mutmut_\d+)`: \S")  # docs/testing.md, one line each


def committed_files() -> dict[str, bytes]:
    """The project as committed (HEAD): a consistent tree even while files are being edited."""
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def sync(work: Path, overlay: list[str]) -> None:
    """HEAD's files into ``work`` (only the changed ones are written, so mutmut's cache holds),
    plus the working tree's copy of each ``overlay`` path (tests being written)."""
    files = committed_files()
    for name in overlay:
        files[name] = (ROOT / name).read_bytes()
    for name, data in files.items():
        dst = work / name
        if dst.exists() and dst.read_bytes() == data:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
    for path in work.rglob("*"):  # files deleted in the project go here too
        rel = path.relative_to(work).as_posix()
        if path.is_file() and rel not in files and not rel.startswith(("mutants/", ".")) \
                and "__pycache__" not in rel and rel not in ("pyproject.toml", "mutmut.log"):
            path.unlink()
    # mutmut rewrites the Python files of its mutants/ copy when they change, but copies every
    # other file of the package (menus, templates, static files) only once: bring those up to
    # date too, or the tests read this commit's code with an older commit's YAML.
    mutated = work / "mutants"
    if mutated.is_dir():
        for name, data in files.items():
            if name.startswith("ivr/") and not name.endswith(".py"):
                dst = mutated / name
                if not (dst.exists() and dst.read_bytes() == data):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(data)
        for path in (mutated / "ivr").rglob("*"):
            rel = path.relative_to(mutated).as_posix()
            if path.is_file() and not rel.endswith((".py", ".meta")) and "__pycache__" not in rel \
                    and rel not in files:
                path.unlink()


def configure(work: Path, module: str, tests: list[str]) -> None:
    selected = [t for t in tests if (work / t.split("::")[0]).exists()]
    base = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    quoted = ", ".join(f'"{x}"' for x in selected)
    (work / "pyproject.toml").write_text(base + f"""
[tool.mutmut]
source_paths = ["ivr"]
only_mutate = ["{module}"]
pytest_add_cli_args_test_selection = [{quoted}]
pytest_add_cli_args = [{", ".join(f'"{x}"' for x in ["-p", "no:cacheprovider", "-x", *PYTEST_ARGS.get(module, [])])}]
also_copy = [{", ".join(f'"{x}"' for x in ALSO_COPY)}]
use_git_change_detection = false
# Every run of the tests in a fresh fork: the IVR engine's tests do not pass twice in one
# process (a second session finds state the first left behind).
process_isolation = "forkserver"
""", encoding="utf-8")


def mutant_statuses(work: Path) -> dict[str, str]:
    out = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=work, check=True,
                         capture_output=True, text=True).stdout
    statuses = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("ivr."):
            statuses[name] = status
    return statuses


def equivalents() -> set[str]:
    doc = ROOT / "docs" / "testing.md"
    lines = doc.read_text(encoding="utf-8").splitlines() if doc.exists() else []
    return {m[1] for line in lines if (m := EQUIVALENT.match(line))}


def run_module(module: str, children: int, timeout: float | None, overlay: list[str], mode: str) -> dict[str, str]:
    work = WORK / Path(module).with_suffix("").as_posix().replace("/", ".")
    dotted = Path(module).with_suffix("").as_posix().replace("/", ".")
    if mode == "report":
        print(f"== {module}: results so far in {work.relative_to(ROOT)}", flush=True)
        return {k: v for k, v in mutant_statuses(work).items() if k.startswith(dotted + ".")}
    work.mkdir(parents=True, exist_ok=True)
    sync(work, overlay)
    configure(work, module, MODULES[module])
    # Without names mutmut checks only the mutants that have no result yet (only_mutate keeps
    # it to this module); "survivors" names the ones that were not killed, to check them again
    # after tests were added (mutmut runs a named mutant whatever its last result).
    names: list[str] = []
    if mode == "survivors":
        names = sorted(n for n, s in mutant_statuses(work).items()
                       if n.startswith(dotted + ".") and s not in KILLED and s not in ("skipped", "not checked"))
        if not names:
            print(f"== {module}: no survivors to check again")
            return {k: v for k, v in mutant_statuses(work).items() if k.startswith(dotted + ".")}
    started = time.monotonic()
    log = work / "mutmut.log"
    print(f"== {module}: mutmut run in {work.relative_to(ROOT)} (output in {log.name})", flush=True)
    try:
        with log.open("w") as out:
            subprocess.run([str(MUTMUT), "run", "--max-children", str(children), *names],
                           cwd=work, check=False, timeout=timeout, stdout=out, stderr=subprocess.STDOUT,
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    except subprocess.TimeoutExpired:
        print(f"   stopped after {timeout:.0f} s; the next run goes on where this one stopped")
    print(f"   {time.monotonic() - started:.0f} s", flush=True)
    return {k: v for k, v in mutant_statuses(work).items() if k.startswith(dotted + ".")}


def main(argv: list[str]) -> int:
    modules = argv or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        print(f"not a mutated module: {', '.join(unknown)} (see MODULES in {__file__})", file=sys.stderr)
        return 2
    children = int(os.environ.get("MUTATE_CHILDREN", "1"))
    timeout = float(os.environ["MUTATE_TIMEOUT"]) if os.environ.get("MUTATE_TIMEOUT") else None
    overlay = os.environ.get("MUTATE_OVERLAY", "").split()
    mode = os.environ.get("MUTATE_MODE", "run")
    if mode not in ("run", "survivors", "report"):
        print(f"MUTATE_MODE: run, survivors or report, not {mode!r}", file=sys.stderr)
        return 2
    equivalent = equivalents()
    rows = []
    for module in modules:
        if not (ROOT / module).exists() and mode != "report":
            print(f"== {module}: not in the tree, skipped")
            continue
        statuses = run_module(module, children, timeout, overlay, mode)
        counts = Counter(statuses.values())
        equal = {n for n, s in statuses.items() if n in equivalent and s not in KILLED}
        killed = sum(counts[s] for s in KILLED)
        counted = len(statuses) - len(equal) - counts["skipped"] - counts["not checked"]
        score = 100.0 * killed / counted if counted else 0.0
        survivors = sorted(n for n, s in statuses.items()
                           if s not in KILLED and s not in ("skipped", "not checked") and n not in equal)
        rows.append((module, len(statuses), killed, len(survivors), len(equal), counts["not checked"], score))
        for name in survivors:
            print(f"   survived: {name} ({statuses[name]})")
    print()
    print(f"{'module':32} {'mutants':>7} {'killed':>7} {'alive':>6} {'equiv':>6} {'unrun':>6} {'score':>7}")
    for module, total, killed, alive, equal, unrun, score in rows:
        flag = "" if score >= GOAL and not unrun else "  < goal" if score < GOAL else "  (incomplete)"
        print(f"{module:32} {total:7} {killed:7} {alive:6} {equal:6} {unrun:6} {score:6.1f}%{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
