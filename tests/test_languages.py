"""Caller languages come from one registry (languages.yaml beside the menus).

Adding Russian to the 9 branch, as a site would: one registry entry (with its SMS and spoken
Open311 replies), the language's texts, queue and option in main.yaml, then ``dasan call``
walks it, ``dasan prompts synth`` makes its placeholders with the registry's voice and a
Russian citizen's service request is answered by SMS in Russian, the browser call page and
the Open311 services list speak Russian. Without the registry entry the menus are refused,
naming the file and line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.console.admin import editable_files, validate
from ivr.context import AppContext
from ivr.contracts import Stream
from ivr.datafolder import DEFAULT_MENUS, seed
from ivr.db import Database
from ivr.engine.menu import load_menus
from ivr.languages import load_languages
from ivr.open311 import texts
from ivr.open311.catalog import DEFAULT_PATH, load_catalog
from ivr.open311.service import NewRequest, Open311
from ivr.yamlfile import DataError
from tests.support.console import PASSWORD, prepare_settings, serve_console

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "ivr" / "menus" / "languages.yaml"
RUSSIAN_MAIN_MENU = ("Сеул 120. Транспорт — 1, мусор — 2, соцпомощь — 3, налоги — 4, жалобы — 5, "
                     "статус заявки — 6. Консультант — 0, другие языки — 9.")
# The registry entry docs/extending.md shows: names, voice, the Open311 replies, the call
# page's labels (its messages are English: the fallback) and the Open311 services' names.
RUSSIAN_ENTRY = """\
  ru:
    name: Русский
    english: Russian
    voice: ru
    labels: {ko: 러시아어}
    fallback: en
    replies:
      open: в работе
      closed: выполнена
      received: "[{site}] Ваша заявка «{service}» принята. Номер {id}. Позвоните и наберите его, чтобы узнать статус."
      updated: "[{site}] Заявка {id} «{service}»: {status}."
      spoken: "Заявка номер {id}, {service}: {status}."
      expected: " Ожидаемый срок: {date}."
      not_found: "Заявка номер {id} не найдена. Проверьте номер и наберите его снова."
    page:
      app_name: 120 Колл-центр Дасан
      language: Язык
      video_call: Видеозвонок на языке жестов
      voice_call: Голосовой звонок
      chat: Онлайн-чат
      report: Сообщить о проблеме (фото)
      track: Проверить заявку
      hang_up: Завершить
      mute: Без звука
      keypad: Клавиатура
      tracking_number: Номер заявки
      check: Проверить
      send: Отправить
      description: Что случилось
      photo: Фото
      address: Где (адрес)
      category: Тип проблемы
    services:
      noise: жалоба на шум
      street_condition: сообщение о повреждении дороги
      illegal_parking: сообщение о незаконной парковке
      waste: сообщение о мусоре
      street_light: сообщение о неисправном фонаре
"""


def test_the_shipped_menus_use_the_registry_and_espeak_has_its_voices() -> None:
    registry = load_languages()
    menus = load_menus(DEFAULT_MENUS / "main.yaml")
    assert list(menus.languages) == list(registry.codes) == ["ko", "en", "zh", "ja", "vi", "mn"]
    # espeak-ng -q: synthesize without sound; an unknown voice exits with status 1.
    missing = {code: lang.voice for code, lang in registry.languages.items()
               if subprocess.run(["espeak-ng", "-q", "-v", lang.voice, "1"], capture_output=True).returncode}
    assert not missing, missing
    assert subprocess.run(["espeak-ng", "-q", "-v", "qqq", "1"], capture_output=True).returncode
    assert registry.languages["mn"].voice_note  # Mongolian is read by another language's voice, and says so


def _dasan(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASAN")}
    env.update(DASAN__DATA_DIR=str(site / "data"), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ivr.cli", *args], cwd=site, env=env,
                          capture_output=True, text=True, timeout=300)


def _add_russian_to_the_menus(menus_file: Path) -> None:
    menus = yaml.safe_load(menus_file.read_text(encoding="utf-8"))
    menus["languages"].append("ru")
    menus["queues"]["ru"] = "general-wide"
    menus["night_sms"]["ru"] = "Сеул 120: мы свяжемся с вами в рабочее время."
    for name, by_language in menus["prompts"].items():
        if len(by_language) > 1:  # one-language prompts ("For English press 1") stay as they are
            by_language["ru"] = RUSSIAN_MAIN_MENU if name == "main-menu" else f"(ru) {by_language['en']}"
    menus["prompts"]["lang-ru"] = {"ru": "Для русского языка нажмите 6."}
    branch = menus["nodes"]["languages"]
    branch["prompt"].insert(-1, "lang-ru")
    branch["options"]["6"] = {"goto": "main", "language": "ru"}
    menus_file.write_text(yaml.safe_dump(menus, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_adding_russian_is_a_registry_entry_plus_its_menu_texts(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    settings = Settings(data_dir=site / "data")
    seed(settings)
    menus_dir = settings.agi.menus_dir
    _add_russian_to_the_menus(menus_dir / "main.yaml")

    # The menus name a language the registry does not know: refused, with file and line.
    refused = _dasan(site, "call", "--lang", "ko", "--digits", "9 6")
    assert refused.returncode != 0
    assert "main.yaml:" in refused.stderr + refused.stdout and "unknown language 'ru'" in refused.stderr + refused.stdout

    # One entry in the registry beside the menus.
    registry = menus_dir / "languages.yaml"
    registry.write_text(registry.read_text(encoding="utf-8") + RUSSIAN_ENTRY, encoding="utf-8")
    walked = _dasan(site, "call", "--lang", "ko", "--digits", "9 6")
    assert walked.returncode == 0, walked.stdout + walked.stderr
    assert "path: main:9 > languages:6" in walked.stdout and "LANG=ru" in walked.stdout, walked.stdout
    assert RUSSIAN_MAIN_MENU in walked.stdout  # the caller now hears the menu in Russian

    # A Russian caller goes to the queue the menus give the language.
    queued = _dasan(site, "call", "--lang", "ru", "--digits", "0")
    assert queued.returncode == 0, queued.stdout + queued.stderr
    assert "QUEUE=general-wide" in queued.stdout, queued.stdout

    # Placeholder prompts for Russian use the registry's voice.
    sounds = site / "sounds"
    synth = _dasan(site, "prompts", "synth", "--lang", "ru", "--sounds-dir", str(sounds))
    # (it exits 1 because the other languages have no prompts in this empty sounds folder)
    assert "synthesized" in synth.stdout and not synth.stderr, synth.stdout + synth.stderr
    assert "missing: ru/" not in synth.stdout, synth.stdout
    written = sorted(p.name for p in (sounds / "ru" / "dasan").glob("*.wav"))
    assert "main-menu.wav" in written and "lang-ru.wav" in written
    assert not (sounds / "ko").exists()  # only the language asked for
    shutil.rmtree(sounds)


def test_every_shipped_language_has_its_replies_and_an_unknown_one_reads_korean() -> None:
    registry = load_languages()
    assert all(language.replies is not None for language in registry.languages.values())
    assert texts.lang(registry, "ru") == "ko" and texts.lang(registry, "mn") == "mn"
    assert texts.lang(registry, None) == "ko"


async def test_a_russian_citizen_gets_the_replies_in_russian(settings: Settings) -> None:
    """Russian added to the site's registry with its replies: the SMS that a request was taken,
    the SMS when its status changes, and what the IVR says for the number are Russian. A
    language added without replies reads Korean, and a reply with an unknown placeholder is
    refused naming the file and line."""
    seed(settings)
    registry = settings.agi.menus_dir / "languages.yaml"
    shipped = registry.read_text(encoding="utf-8")
    registry.write_text(shipped + RUSSIAN_ENTRY + "  th: {name: ไทย, english: Thai, voice: th}\n", encoding="utf-8")
    settings.site_name = "Сеул 120"
    ctx = AppContext(settings, Database(settings.database_url), MemoryBus())
    desk = Open311(ctx)
    async with ctx.db.transaction() as session:
        sr, _ = await desk.create(session, NewRequest("street_light", address_string="Jongno 1",
                                                      phone="010-2345-6789", language="ru"), source="web")
        thai, _ = await desk.create(session, NewRequest("street_light", address_string="Jongno 2",
                                                        phone="010-3456-7890", language="th"), source="web")
    assert sr.language == "ru" and thai.language == "ko"
    number, name, korean_name = sr.service_request_id, "сообщение о неисправном фонаре", "가로등 고장 신고"
    await desk.notify_received(sr)
    await desk.update_status(number, "open", expected_datetime="2026-12-24T09:00:00+09:00", notify=True)
    await desk.notify_received(thai)
    sent = [job.data for job in await ctx.bus.consume(Stream.SMS_OUTBOUND, "test", "reader", count=10, block=0.1)]
    assert [(m["to"], m["body"]) for m in sent] == [
        ("+821023456789", f"[Сеул 120] Ваша заявка «{name}» принята. Номер {number}. "
                        "Позвоните и наберите его, чтобы узнать статус."),
        ("+821023456789", f"[Сеул 120] Заявка {number} «{name}»: в работе. Ожидаемый срок: 2026-12-24."),
        ("+821034567890", f"[Сеул 120] {korean_name} 접수되었습니다. 접수번호 {thai.service_request_id}. "
                          "처리 상황은 전화로 접수번호를 눌러 확인하실 수 있습니다."),
    ]
    spaced = " ".join(number)
    assert await desk.status_text(number, "ru") == f"Заявка номер {spaced}, {name}: в работе. Ожидаемый срок: 2026-12-24."
    assert await desk.status_text("123", "ru") == "Заявка номер 1 2 3 не найдена. Проверьте номер и наберите его снова."

    # A typo in a placeholder is refused with file and line; the shipped registry still loads.
    registry.write_text(shipped + RUSSIAN_ENTRY.replace("Номер {id}", "Номер {number}"), encoding="utf-8")
    with pytest.raises(DataError, match=r"languages\.yaml:\d+: .*received: unknown placeholder \{number\}"):
        load_languages(settings.agi.menus_dir)
    await ctx.db.dispose()


async def test_the_console_checks_a_registry_edit_against_the_menus(settings: Settings) -> None:
    """An admin edits languages.yaml in the console: dropping a language the menus still offer
    is refused, naming main.yaml; adding one is accepted."""
    ctx = AppContext(settings, Database(settings.database_url), MemoryBus())
    files = editable_files(ctx)
    assert "menu:languages.yaml" in files
    registry = files["menu:languages.yaml"].read_text(encoding="utf-8")
    without_mongolian = registry.split("\n  mn:\n", 1)[0] + "\n"  # Mongolian is the last entry
    assert "mn:" not in without_mongolian and "  vi:" in without_mongolian
    problems = validate(ctx, "menu:languages.yaml", without_mongolian + "\n")
    assert any(p.startswith("main.yaml:") and "unknown language 'mn'" in p for p in problems), problems
    assert validate(ctx, "menu:languages.yaml", registry + "  ru: {name: Русский, english: Russian, voice: ru}\n") == []
    await ctx.db.dispose()


async def test_the_console_names_a_new_language_in_each_readers_language(settings: Settings, tmp_path: Path) -> None:
    """Russian added to the site's registry: the console's texts name it (Korean label for a
    Korean reader, the English name otherwise) and the admin page offers it for recordings."""
    prepare_settings(settings, tmp_path)
    registry = settings.agi.menus_dir / "languages.yaml"
    registry.write_text(registry.read_text(encoding="utf-8")
                        + "  ru: {name: Русский, english: Russian, voice: ru, labels: {ko: 러시아어}}\n",
                        encoding="utf-8")
    async with serve_console(settings) as console:
        for username, page, label in (("kim.minji", "/console/agent", "러시아어"),
                                      ("admin1", "/console/admin", "Russian")):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.post(f"{console.url}/api/login",
                                     json={"username": username, "password": PASSWORD}) as r:
                    assert r.status == 200
                async with http.get(console.url + page) as r:
                    html = await r.text()
            texts = json.loads(html.split('<script type="application/json" id="texts">', 1)[1].split("</script>", 1)[0])
            assert texts["lang_ru"] == label and texts["lang_mn"] in ("몽골어", "Mongolian"), username
        assert "<option>ru</option>" in html  # the admin page's prompt upload


def _page_texts(html: str) -> dict[str, str]:
    return dict(json.loads(html.split('<script type="application/json" id="texts">', 1)[1].split("</script>", 1)[0]))


async def test_the_call_page_and_the_services_list_speak_a_new_language(settings: Settings, tmp_path: Path) -> None:
    """Russian added to the site's registry with its page labels and service names: the
    browser call page (/call, over HTTP) offers it and shows its labels (the messages it has
    not translated in its fallback, English), a Russian browser gets it by Accept-Language, and
    the Open311 services list names the services in Russian for ?lang=ru. Thai, added with
    neither, is not offered on the page and reads the first language's (Korean) names."""
    prepare_settings(settings, tmp_path)
    registry = settings.agi.menus_dir / "languages.yaml"
    registry.write_text(registry.read_text(encoding="utf-8") + RUSSIAN_ENTRY
                        + "  th: {name: ไทย, english: Thai, voice: th}\n", encoding="utf-8")
    english = load_languages().page_texts("en")
    async with serve_console(settings) as console, aiohttp.ClientSession() as http:
        async with http.get(f"{console.url}/call?lang=ru") as r:
            assert r.status == 200
            html = await r.text()
        async with http.get(f"{console.url}/call", headers={"Accept-Language": "ru-RU,ru;q=0.9"}) as r:
            by_browser = await r.text()
        async with http.get(f"{console.url}/call?lang=th") as r:
            thai_page = await r.text()
        async with http.get(f"{console.url}/call/manifest.webmanifest?lang=ru") as r:
            manifest = json.loads(await r.text())
        services = {}
        for lang in ("ru", "th", ""):
            async with http.get(f"{console.url}/open311/v2/services.json" + (f"?lang={lang}" if lang else "")) as r:
                assert r.status == 200
                services[lang] = {s["service_code"]: s["service_name"] for s in await r.json()}

    texts = _page_texts(html)
    assert '<html lang="ru">' in html and '<html lang="ru">' in by_browser
    assert '<button id="btn-video" class="big primary" type="button">Видеозвонок на языке жестов</button>' in html
    assert '<a id="link-chat" class="big button" href="/chat?lang=ru">Онлайн-чат</a>' in html
    assert '<a href="/call?lang=ru" hreflang="ru" class="active">Русский</a>' in html
    assert texts["keypad"] == "Клавиатура" and texts["category"] == "Тип проблемы"
    assert texts["err_no_camera"] == english["err_no_camera"]  # not translated: the fallback's
    assert manifest["name"] == "120 Колл-центр Дасан" and manifest["lang"] == "ru"
    # Thai has no page texts: not offered, and asked for it the page answers in the first language
    assert 'hreflang="th"' not in html and '<html lang="ko">' in thai_page

    assert services["ru"]["street_light"] == "сообщение о неисправном фонаре"
    assert services["ru"]["noise"] == "жалоба на шум" and len(services["ru"]) == 5
    assert services["th"]["street_light"] == "가로등 고장 신고"  # no names of its own: Korean
    assert services[""]["street_light"] == "Street Light Out"  # without lang: the catalogue's GeoReport name


def test_every_shipped_service_is_named_in_every_shipped_language(tmp_path: Path) -> None:
    """The services' names are the registry's; a catalogue that still names them is refused,
    saying where they went."""
    registry, catalog = load_languages(), load_catalog(DEFAULT_PATH)
    codes = {s.service_code for s in catalog.services}
    for code, language in registry.languages.items():
        assert set(language.services) == codes, code
    old_style = tmp_path / "services.yaml"
    old_style.write_text(DEFAULT_PATH.read_text(encoding="utf-8").replace(
        "    agency: Environment Division\n", "    agency: Environment Division\n    names: {ko: 소음 신고}\n"),
        encoding="utf-8")
    with pytest.raises(DataError, match=r"services\.yaml:\d+: .*names: a service's name in each language is in "
                                        r"the language registry"):
        load_catalog(old_style)


def test_the_first_language_needs_every_page_text_and_a_fallback_must_exist(tmp_path: Path) -> None:
    shipped = load_languages()
    first = shipped.codes[0]
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    del data["languages"][first]["page"]["survey_thanks"]
    (tmp_path / "languages.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(DataError, match=rf"the first language \({first}\) needs every `page` text .*survey_thanks"):
        load_languages(tmp_path)
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    data["languages"]["zh"]["fallback"] = "ru"
    (tmp_path / "languages.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"zh: fallback 'ru' is not a language of this file"):
        load_languages(tmp_path)


def test_docs_show_the_entry_these_tests_add() -> None:
    """docs/extending.md's Russian entry is the one the tests above add."""
    doc = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    block = doc.split("   ```yaml\n     ru:\n", 1)[1].split("   ```", 1)[0]
    shown = yaml.safe_load("ru:\n" + "\n".join(line[5:] for line in block.splitlines()))
    assert shown == yaml.safe_load(RUSSIAN_ENTRY)
