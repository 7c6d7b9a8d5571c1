from pathlib import Path

import pytest

from ivr.config import load_settings
from ivr.yamlfile import DataError


def test_defaults_are_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.database_url.startswith("sqlite+aiosqlite:///")
    assert s.bus.backend == "memory"
    assert s.agi.port == 4573


def test_file_and_environment_override(tmp_path: Path) -> None:
    cfg = tmp_path / "dasan.yaml"
    cfg.write_text("agi:\n  port: 4600\nbus:\n  backend: redis\nrecordings:\n  dir: rec\n")
    s = load_settings(cfg, environ={"DASAN__AGI__PORT": "4700", "DASAN__WEB__HOST": "0.0.0.0"})
    assert s.agi.port == 4700  # environment wins over the file
    assert s.web.host == "0.0.0.0"
    assert s.bus.backend == "redis"
    assert s.recordings.dir == tmp_path / "rec"  # relative to the file


def test_wrong_value_names_file_line_and_expected_form(tmp_path: Path) -> None:
    cfg = tmp_path / "dasan.yaml"
    cfg.write_text("site_name: x\nbus:\n  backend: kafka\nagi:\n  port: not-a-port\n")
    with pytest.raises(DataError) as err:
        load_settings(cfg, environ={})
    problems = err.value.problems
    assert any(p.startswith(f"{cfg}:3: bus.backend:") and "'memory' or 'redis'" in p for p in problems)
    assert any(p.startswith(f"{cfg}:5: agi.port:") for p in problems)


def test_unknown_key_is_reported_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "dasan.yaml"
    cfg.write_text("agi:\n  host: 127.0.0.1\n  prot: 4573\n")
    with pytest.raises(DataError) as err:
        load_settings(cfg, environ={})
    assert err.value.problems == [f"{cfg}:3: agi.prot: Extra inputs are not permitted (unknown key; check the spelling)"]


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    cfg = tmp_path / "dasan.yaml"
    cfg.write_text("agi:\n  port: 1\n bad: [\n")
    with pytest.raises(DataError) as err:
        load_settings(cfg, environ={})
    assert str(cfg) in str(err.value) and "YAML syntax error" in str(err.value)


def test_cli_config_check_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ivr.cli import main

    cfg = tmp_path / "dasan.yaml"
    cfg.write_text("web:\n  port: 99999\n")
    assert main(["--config", str(cfg), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}:2: web.port: Input should be less than or equal to 65535" in err
