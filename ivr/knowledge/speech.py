"""The IVR's voice of an article: an ``answer`` node with ``article: <key>`` plays
``<sound_folder>/kb-<key>`` in the caller's language, so what the IVR says and what agents
send come from one article.

``speak`` writes that sound for every language the article is written in (and the language
registry knows): espeak-ng placeholders like ``dasan prompts synth``'s, from the body with its
variables left out (a caller in the IVR has no tracking number yet). It runs when an article
meant for the ``ivr`` channel is saved; ``silence`` removes the sounds when it no longer is.
The IVR plays the file as it stands: an article whose validity ends is taken off the IVR by
saving it without the ``ivr`` channel.
"""

from __future__ import annotations

from pathlib import Path

from ivr.knowledge.text import SPACE, VARIABLE


def article_sound(sound_folder: str, key: str) -> str:
    """The Asterisk sound name of an article (the language folder comes from CHANNEL(language))."""
    return f"{sound_folder}/kb-{key}"


def spoken_text(body: str) -> str:
    return SPACE.sub(" ", VARIABLE.sub("", body)).strip()


def sound_path(sounds_dir: Path, language: str, sound_folder: str, key: str) -> Path:
    return sounds_dir / language / f"{article_sound(sound_folder, key)}.wav"


async def speak(texts: dict[str, dict[str, str]], key: str, sounds_dir: Path, sound_folder: str,
                languages: tuple[str, ...]) -> list[str]:
    """Write the article's sound in each of its languages the registry has; the languages written."""
    from ivr.prompts import synthesize_one  # espeak-ng and sox, as for the menus' placeholders

    written = []
    for language, text in texts.items():
        if language in languages and spoken_text(text["body"]):
            await synthesize_one(language, spoken_text(text["body"]), sound_path(sounds_dir, language, sound_folder, key))
            written.append(language)
    return written


def silence(key: str, sounds_dir: Path, sound_folder: str, languages: tuple[str, ...]) -> None:
    for language in languages:
        sound_path(sounds_dir, language, sound_folder, key).unlink(missing_ok=True)
