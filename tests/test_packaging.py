"""The project stands on its own.

A wheel built from this checkout, installed into a fresh virtualenv, runs ``dasan`` in a
folder that holds nothing but a configuration: the menus, queue defaults, Asterisk templates
and pages come from the package; what a site edits (here a menu, through the admin console)
lands in the data folder and never inside the installed package. And nothing in the
repository reads files outside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE_CONFIG = """\
data_dir: data
agi: {port: 0}
web: {port: 0}
ami: {enabled: false}
speech: {enabled: false}
asterisk: {config_dir: etc-asterisk, sounds_dir: sounds}
"""


def _checkout_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtualenv holding only the wheel of this checkout.

    The wheel is built as ``pip install .`` builds it (build isolation: setuptools and wheel from
    the index or pip's cache). The dependencies come from the test environment's site-packages
    through a path entry; ``dasan`` itself is the installed wheel, never this source tree.
    """
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    for name in _checkout_files():  # a copy: building writes build/ and *.egg-info beside the sources
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = (tmp / "dist").glob("dasan-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True)
    return env_dir / "bin"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASAN") and k != "PYTHONPATH"}
    return env


def _package_dir(bin_dir: Path) -> Path:
    out = subprocess.run([str(bin_dir / "python"), "-c", "import ivr; print(ivr.__file__)"], cwd="/",
                         check=True, capture_output=True, text=True, env=_env()).stdout.strip()
    return Path(out).parent


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _dasan(bin_dir: Path, site: Path, *args: str) -> str:
    proc = subprocess.run([str(bin_dir / "dasan"), *args], cwd=site, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_installed_wheel_runs_on_a_fresh_data_folder(installed: Path, tmp_path: Path) -> None:
    package = _package_dir(installed)
    assert package.is_relative_to(installed.parent), package  # the wheel, not this checkout
    shipped = _snapshot(package)
    assert "menus/main.yaml" in shipped and "defaults/queues/queues.yaml" in shipped
    assert "asterisk/templates/pjsip.conf.j2" in shipped and "asterisk/dialplan/extensions.conf.j2" in shipped
    site = tmp_path / "site"
    site.mkdir()
    (site / "dasan.yaml").write_text(SITE_CONFIG)

    _dasan(installed, site, "config", "check")
    data = site / "data"
    assert (data / "menus" / "main.yaml").read_bytes() == (package / "menus" / "main.yaml").read_bytes()
    assert {p.name for p in (data / "queues").glob("*.yaml")} == {"queues.yaml", "agents.yaml"}
    _dasan(installed, site, "asterisk", "render", "--out", "rendered")
    assert "[dasan-inbound]" in (site / "rendered" / "extensions.conf").read_text()
    assert (site / "rendered" / "pjsip.conf").is_file()
    heard = _dasan(installed, site, "call", "--lang", "ko", "--digits", "9 1")
    assert "path: main:9 > languages:1" in heard and "LANG=en" in heard, heard

    # `dasan up`, then an admin edits the menus in the console: the data folder changes.
    proc = subprocess.Popen([str(installed / "dasan"), "up"], cwd=site, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (lines and "ready" in lines[-1]):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        output = "".join(lines)
        web = re.search(r"dasan: web\s+(http://\S+)", output)
        first = re.search(r"console user 'admin', password '([^']+)'", output)
        assert web and first and "ready" in output, output
        edited = _edit_menu_in_console(web.group(1), first.group(1))
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert (data / "menus" / "main.yaml").read_text(encoding="utf-8") == edited
    assert (data / "dasan.db").is_file()
    assert _snapshot(package) == shipped  # nothing written inside the installed package


def _edit_menu_in_console(base: str, password: str) -> str:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())

    def call(method: str, path: str, body: object | None = None, csrf: str = "") -> dict[str, object]:
        request = urllib.request.Request(base + path, method=method, data=None if body is None else
                                         json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})
        with opener.open(request, timeout=30) as resp:
            answer: dict[str, object] = json.load(resp)
            return answer

    csrf = str(call("POST", "api/login", {"username": "admin", "password": password})["csrf_token"])
    current = call("GET", "api/console/admin/file?file=menu:main.yaml")
    edited = str(current["text"]) + "# edited in the console\n"
    call("POST", "api/console/admin/file?file=menu:main.yaml", {"text": edited, "sha256": current["sha256"]}, csrf)
    return edited


def test_nothing_in_the_repository_reads_outside_it() -> None:
    """No path climbs out of the checkout (the sibling folder the first sketch and captures came
    from, three parents up), and the package finds nothing through the source tree (its data is
    package data or configured)."""
    sibling = "sha" "red"  # spelt apart so this guard is not itself a path out of the checkout
    outside = re.compile(rf"\.\./{sibling}|/work/{sibling}|parent\.parent\.parent")
    source_tree = re.compile(r"parent\.parent|PROJECT_ROOT")
    found = []
    for name in _checkout_files():
        if name.startswith("tests/data/") or name == "tests/test_packaging.py":
            continue
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".toml", ".yaml", ".yml", ".j2", ".sh", ".cfg", ".ini", "") :
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if outside.search(line) or (name.startswith("ivr/") and source_tree.search(line)):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
