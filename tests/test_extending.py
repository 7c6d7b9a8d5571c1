"""docs/extending.md done as a site does it: a new queue and a new menu in a data folder, then
``dasan config check``, ``dasan asterisk render`` and ``dasan call`` see them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ivr.config import Settings
from ivr.datafolder import seed

ROOT = Path(__file__).resolve().parent.parent
HOUSING_MENU = {lang: text for lang, text in [
    ("ko", "주택 안내는 1번, 주택 상담사 연결은 2번을 누르세요."),
    ("en", "For housing information press 1, for a housing counsellor press 2."),
    ("zh", "住房信息请按1，住房咨询请按2。"),
    ("ja", "じゅうたくの あんないは いち、そうだんは に を おしてください。"),
    ("vi", "Thông tin nhà ở bấm 1, tư vấn nhà ở bấm 2."),
    ("mn", "Орон сууцны мэдээлэл 1, зөвлөх 2."),
]}
HOUSING_INFO = {lang: f"{text} (https://housing.seoul.go.kr)" for lang, text in [
    ("ko", "공공임대주택 모집 공고는 서울주택도시공사 누리집에서 보실 수 있습니다."),
    ("en", "Public rental housing notices are on the Seoul Housing website."),
    ("zh", "公共租赁住房公告请查看首尔住房网站。"),
    ("ja", "こうきょう ちんたい じゅうたくの おしらせは ソウル じゅうたくの ホームページに あります。"),
    ("vi", "Thông báo nhà thuê công cộng có trên trang web Nhà ở Seoul."),
    ("mn", "Нийтийн түрээсийн орон сууцны мэдээлэл Сөүл орон сууцны вэб сайтад бий."),
]}


def _edit_yaml(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _dasan(site: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASAN")}
    env.update(DASAN__DATA_DIR=str(site / "data"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", *args], cwd=site, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_new_queue_and_a_new_menu_reach_asterisk_and_callers(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    settings = Settings(data_dir=site / "data")
    seed(settings)

    # A queue: its entry in queues.yaml, and agents with the skill in agents.yaml.
    def add_queue(data: dict[str, Any]) -> None:
        data["queues"]["housing"] = {"description": "주택 상담 (housing)", "language": "ko", "hours": "always"}

    def add_skill(data: dict[str, Any]) -> None:
        data["agents"][0]["skills"]["housing"] = 4

    _edit_yaml(settings.queues_dir / "queues.yaml", add_queue)
    _edit_yaml(settings.queues_dir / "agents.yaml", add_skill)

    # A menu: option 7 of the main menu opens it; its prompts in every language.
    def add_menu(data: dict[str, Any]) -> None:
        data["prompts"]["housing-menu"] = HOUSING_MENU
        data["prompts"]["housing-info"] = HOUSING_INFO
        data["nodes"]["main"]["options"]["7"] = "housing"
        data["nodes"]["housing"] = {"kind": "menu", "prompt": "housing-menu",
                                    "options": {"1": "housing-info", "2": "housing-counsellor"}}
        data["nodes"]["housing-info"] = {"kind": "answer", "topic": "housing", "prompt": "housing-info",
                                         "then": "hangup"}
        data["nodes"]["housing-counsellor"] = {"kind": "queue", "topic": "housing", "queue": "housing"}

    _edit_yaml(settings.agi.menus_dir / "main.yaml", add_menu)

    assert "configuration OK" in _dasan(site, "config", "check")
    _dasan(site, "asterisk", "render", "--out", "rendered")
    assert "[housing]" in (site / "rendered" / "queues.conf").read_text()

    info = _dasan(site, "call", "--digits", "7 1")
    assert "path: main:7 > housing:1 > answer:housing-info" in info and HOUSING_INFO["ko"] in info, info
    english = _dasan(site, "call", "--lang", "en", "--digits", "7 2")
    assert HOUSING_MENU["en"] in english, english
    assert "QUEUE=housing" in english and "TOPIC=housing" in english, english
