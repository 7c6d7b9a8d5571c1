"""queues/*.yaml rendered into queues.conf, queuerules.conf and the dialplan's queue parts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ivr.asterisk.render import queue_views, render
from ivr.config import Settings
from ivr.datafolder import DEFAULT_QUEUES
from ivr.queues import load_queues
from ivr.yamlfile import DataError


def block(text: str, header: str) -> str:
    """The lines of one [section] (up to the next section)."""
    start = text.index(f"[{header}]")
    nxt = re.search(r"^\[", text[start + 1:], re.M)
    return text[start: start + 1 + nxt.start()] if nxt else text[start:]


def exten(text: str, context: str, name: str) -> list[str]:
    """The steps of one extension of one context."""
    lines = block(text, context).splitlines()
    steps: list[str] = []
    for line in lines:
        if line.startswith(f"exten => {name},"):
            steps.append(line)
        elif steps and line.startswith(" same =>"):
            steps.append(line)
        elif steps:
            break
    return steps


@pytest.fixture
def site(tmp_path: Path) -> tuple[Settings, Path]:
    queues = tmp_path / "queues"
    shutil.copytree(DEFAULT_QUEUES, queues)
    return Settings(queues_dir=queues), queues


def test_a_queue_per_skill_group_with_its_settings() -> None:
    s = Settings()
    q = load_queues(s.queues_dir)
    text = render(s, q)["queues.conf"]
    for name in q.queues:
        section = block(text, name)
        assert f"strategy = {q.setting(name, 'strategy')}" in section
        assert f"timeout = {q.setting(name, 'timeout')}" in section
        assert f"wrapuptime = {q.setting(name, 'wrapup_seconds')}" in section
        assert f"musicclass = {q.setting(name, 'musicclass')}" in section
        assert "context = dasan-queue-exit" in section
    assert {"general-ko", "en", "zh", "ja", "vi", "mn", "sign-video"} <= set(q.queues)


def test_proficiency_becomes_the_member_penalty_at_login() -> None:
    s = Settings()
    q = load_queues(s.queues_dir)
    text = render(s, q)["extensions.conf"]
    for agent in q.agents:
        steps = "\n".join(exten(text, "dasan-agent-login", agent.extension))
        for queue, level in agent.skills.items():
            penalty = 5 - level
            assert (f"AddQueueMember({queue},PJSIP/{agent.extension},{penalty},,{agent.username},"
                    f"PJSIP/{agent.extension})") in steps
        logout = "\n".join(exten(text, "dasan-agent-logout", agent.extension))
        assert logout.count("RemoveQueueMember(") == len(agent.skills)


def test_rules_widen_the_penalty_as_the_caller_waits(site: tuple[Settings, Path]) -> None:
    s, folder = site
    yaml = (folder / "queues.yaml").read_text()
    yaml = yaml.replace("      - {after_seconds: 60, max_penalty: 2}\n      - {after_seconds: 120, max_penalty: 4}",
                        "      - {after_seconds: 120, max_penalty: 4}\n      - {after_seconds: 45, max_penalty: 3}")
    (folder / "queues.yaml").write_text(yaml)
    files = render(s)
    rules = block(files["queuerules.conf"], "rules-general-ko")
    assert re.findall(r"penaltychange => (\d+),(\d+)", rules) == [("45", "3"), ("120", "4")]  # in time order
    assert "defaultrule = rules-general-ko" in block(files["queues.conf"], "general-ko")
    assert "defaultrule" not in block(files["queues.conf"], "general-wide")
    # the caller starts with the experts (penalty <= 1), then the rules take over
    options = "\n".join(exten(files["extensions.conf"], "dasan-queue-options", "general-ko"))
    assert "Set(QUEUE_MAX_PENALTY=1)" in options
    assert "Set(QUEUE_MAX_PENALTY=)" in "\n".join(exten(files["extensions.conf"], "dasan-queue-options", "zh"))


def test_overflow_to_a_wider_queue_after_the_set_time() -> None:
    s = Settings()
    files = render(s)
    options = "\n".join(exten(files["extensions.conf"], "dasan-queue-options", "general-ko"))
    assert "Set(Q_TIMEOUT=300)" in options and "Set(Q_OVERFLOW=general-wide)" in options
    # no overflow: wait up to the longest wait, then the dialplan offers a callback
    wide = "\n".join(exten(files["extensions.conf"], "dasan-queue-options", "general-wide"))
    assert "Set(Q_TIMEOUT=1800)" in wide and "Set(Q_OVERFLOW=)" in wide
    # with somewhere to go, a queue nobody can answer is left at once; the last resort always waits
    assert "joinempty = unavailable,invalid,unknown" in block(files["queues.conf"], "general-ko")
    assert "joinempty = yes" in block(files["queues.conf"], "general-wide")


def test_announcements_and_music(site: tuple[Settings, Path]) -> None:
    s, folder = site
    yaml = (folder / "queues.yaml").read_text()
    yaml = yaml.replace("  zh:\n    description: 中文 line\n",
                        "  zh:\n    description: 中文 line\n    musicclass: chinese\n    announce_position: false\n")
    (folder / "queues.yaml").write_text(yaml)
    s.asterisk.moh_dir = Path("/srv/moh")
    files = render(s)
    zh = block(files["queues.conf"], "zh")
    assert "musicclass = chinese" in zh and "announce-position = no" in zh and "announce-holdtime = no" in zh
    ko = block(files["queues.conf"], "general-ko")
    assert "announce-position = yes" in ko and "announce-frequency = 60" in ko
    moh = files["musiconhold.conf"]
    assert "directory = /srv/moh/chinese" in block(moh, "chinese")
    assert "directory = /srv/moh\n" in block(moh, "default")


def test_views_sort_members_by_penalty() -> None:
    q = load_queues(DEFAULT_QUEUES)
    general = next(v for v in queue_views(q) if v.name == "general-ko")
    assert [m[2] for m in general.members] == sorted(m[2] for m in general.members)
    assert general.members[0] == ("agent1001", "kim.minji", 0)


def test_bad_queue_data_is_named_with_file_and_line(site: tuple[Settings, Path]) -> None:
    s, folder = site
    agents = (folder / "agents.yaml").read_text()
    (folder / "agents.yaml").write_text(agents.replace("general-ko: 5, general-wide: 5, en: 3", "general-ko: 9"))
    with pytest.raises(DataError) as err:
        render(s)
    assert any("agents.yaml:" in p and "proficiency 9" in p for p in err.value.problems), err.value.problems
