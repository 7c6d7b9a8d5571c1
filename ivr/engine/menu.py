"""Menus as data: the YAML model, loaded and checked with errors that name file and line.

A menu file (``ivr/menus/main.yaml``) holds the languages, the prompt texts per language
(synthesized as placeholders by ``dasan prompts synth``, replaced by recordings later), the
queue of each language and the nodes. Node kinds:

- ``menu``: play the prompt, read one digit, follow ``options`` (``*`` repeats; a timeout or
  a wrong digit replays; after ``max_failures`` the caller goes to ``on_failure``);
- ``queue``: the caller goes to a queue (the language's queue unless ``queue`` is set) with a
  ``topic``; outside the queue's opening hours (ivr.queues) the queue's night route applies;
- ``answer``: self-service, read out prompts, then go on (``then``) or hang up;
- ``lookup``: read digits (a tracking number), ask a named handler (ivr.engine.lookups) and
  read out what it says.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ivr import yamlfile
from ivr.languages import Languages, load_languages

PROMPT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,60}$")
# What reaches Asterisk as a sound name, a variable the dialplan reads or a queue: plain names.
# A sound folder is a relative path of such names ('..' and absolute paths cannot be written).
SOUND_FOLDER = r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$"
QUEUE_NAME = r"^[a-z][a-z0-9-]{1,39}$"  # ivr.queues.NAME
TOPIC = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
ARTICLE_KEY = r"^[a-z0-9][a-z0-9_-]{0,79}$"  # ivr.knowledge.store.KEY: a sound name too
QueueName = Annotated[str, Field(pattern=QUEUE_NAME)]
DIGITS = set("0123456789*#")
HANGUP = "hangup"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Option(_Strict):
    goto: str
    language: str | None = None  # switch the caller's language (the 120+9 branch)


def _prompts(value: Any) -> Any:
    # "prompt: x" is short for "prompt: [x]"; anything else is left to the type check (an
    # empty "prompt:" is None: a validation error with its line, not a crash).
    return [value] if isinstance(value, str) else value


PromptList = Annotated[list[str], Field(min_length=1)]


class MenuNode(_Strict):
    kind: Literal["menu"]
    prompt: PromptList
    options: dict[str, str | Option]
    timeout_seconds: float | None = Field(None, gt=0)
    max_failures: int | None = Field(None, ge=1)
    on_failure: str | None = None

    _p = field_validator("prompt", mode="before")(_prompts)

    @field_validator("options", mode="after")
    @classmethod
    def _options(cls, value: dict[str, str | Option]) -> dict[str, str | Option]:
        # "1: transport" is short for "1: {goto: transport}"; expanded once, at load.
        return {key: Option(goto=v) if isinstance(v, str) else v for key, v in value.items()}

    def option(self, digit: str) -> Option | None:
        value = self.options.get(digit)
        return Option(goto=value) if isinstance(value, str) else value


class QueueNode(_Strict):
    kind: Literal["queue"]
    topic: str = Field(pattern=TOPIC)
    queue: QueueName | None = None  # default: the queue of the caller's language
    prompt: list[str] = Field(default_factory=list)  # said before the transfer

    _p = field_validator("prompt", mode="before")(_prompts)


class AnswerNode(_Strict):
    kind: Literal["answer"]
    topic: str | None = Field(None, pattern=TOPIC)
    prompt: PromptList
    # A knowledge-base article (ivr.knowledge) read out after the prompts: the spoken text is the
    # article the agents answer from (its sound is made when the article is saved for the IVR).
    article: str | None = Field(None, pattern=ARTICLE_KEY)
    then: str = HANGUP

    _p = field_validator("prompt", mode="before")(_prompts)


class LookupNode(_Strict):
    kind: Literal["lookup"]
    topic: str | None = Field(None, pattern=TOPIC)
    prompt: PromptList
    handler: str
    max_digits: int = Field(20, ge=1, le=40)
    timeout_seconds: float | None = Field(None, gt=0)
    then: str = HANGUP

    _p = field_validator("prompt", mode="before")(_prompts)


Node = Annotated[MenuNode | QueueNode | AnswerNode | LookupNode, Field(discriminator="kind")]


class MenuSet(_Strict):
    languages: list[str] = Field(default_factory=lambda: list(load_languages().codes))
    start: str = "main"
    sound_folder: str = Field("dasan", pattern=SOUND_FOLDER)
    timeout_seconds: float = Field(5.0, gt=0)
    max_failures: int = Field(3, ge=1)
    on_failure: str
    queues: dict[str, QueueName]  # language -> queue
    prompts: dict[str, dict[str, str]]
    night_sms: dict[str, str] = Field(default_factory=dict)  # SMS body per language (night route sms)
    nodes: dict[str, Node]
    _registry: Languages = PrivateAttr(default_factory=load_languages)

    @property
    def registry(self) -> Languages:
        """The language registry these menus were checked against (``ivr.languages``)."""
        return self._registry

    def sound(self, prompt: str) -> str:
        """Asterisk sound name; a one-language prompt is played from that language's folder."""
        texts = self.prompts[prompt]
        if len(texts) == 1 and len(self.languages) > 1:
            return f"{next(iter(texts))}/{self.sound_folder}/{prompt}"
        return f"{self.sound_folder}/{prompt}"

    def text(self, prompt: str, language: str) -> str:
        texts = self.prompts.get(prompt, {})
        return texts.get(language) or next(iter(texts.values()), prompt)

    def fixed_language(self, prompt: str) -> str | None:
        texts = self.prompts[prompt]
        return next(iter(texts)) if len(texts) == 1 and len(self.languages) > 1 else None


# Prompts the engine itself plays; every menu file must define them.
ENGINE_PROMPTS = ("invalid", "goodbye", "transfer", "night-closed", "night-callback", "night-sms",
                  "lookup-not-found", "lookup-number", "status-open", "status-closed",
                  "survey-question", "survey-thanks", "callback-registered")


def _check(menus: MenuSet, located: yamlfile.Located) -> list[str]:
    problems: list[str] = []
    known = menus.registry.codes

    def err(loc: tuple[str | int, ...], msg: str) -> None:
        problems.append(f"{located.where(loc)}: {'.'.join(map(str, loc))}: {msg}")

    for lang in menus.languages:
        if lang not in known:
            err(("languages",), f"unknown language {lang!r} (expected some of {', '.join(known)}; "
                                f"languages.yaml lists them)")
        if lang not in menus.queues:
            err(("queues",), f"no queue for language {lang!r}")
    for name, texts in menus.prompts.items():
        if not PROMPT_NAME.fullmatch(name):
            err(("prompts", name), "prompt names are lower-case letters, digits, '-' and '_'")
        for lang in texts:  # a one-language prompt is played from that language's folder
            if lang not in known:
                err(("prompts", name, lang), f"unknown language {lang!r} (expected one of {', '.join(known)})")
        if len(texts) == 1 and len(menus.languages) > 1:
            continue  # one-language prompt (e.g. "For English press 1" in the language menu)
        for lang in menus.languages:
            if not texts.get(lang):
                err(("prompts", name), f"no {lang} text")
    for name in ENGINE_PROMPTS:
        if name not in menus.prompts:
            err(("prompts",), f"missing prompt {name!r} (the engine plays it)")

    def node_ref(loc: tuple[str | int, ...], target: str, allow_hangup: bool = False) -> None:
        if target == HANGUP and allow_hangup:
            return
        if target not in menus.nodes:
            err(loc, f"unknown node {target!r}")

    def prompt_refs(loc: tuple[str | int, ...], names: list[str]) -> None:
        for i, p in enumerate(names):
            if p not in menus.prompts:
                err((*loc, i) if len(names) > 1 else loc, f"unknown prompt {p!r}")

    node_ref(("start",), menus.start)
    node_ref(("on_failure",), menus.on_failure)
    for name, node in menus.nodes.items():
        base: tuple[str | int, ...] = ("nodes", name)
        prompt_refs((*base, "prompt"), node.prompt)
        if isinstance(node, MenuNode):
            for digit in node.options:
                if digit == "*":
                    err((*base, "options", digit), "'*' always repeats the menu; do not map it")
                elif digit not in DIGITS:
                    err((*base, "options", digit), f"option {digit!r} is not a telephone key (0-9, * or #)")
                opt = node.option(digit)
                assert opt is not None
                node_ref((*base, "options", digit), opt.goto)
                if opt.language is not None and opt.language not in menus.languages:
                    err((*base, "options", digit), f"unknown language {opt.language!r}")
            if node.on_failure:
                node_ref((*base, "on_failure"), node.on_failure)
        elif isinstance(node, AnswerNode | LookupNode):
            node_ref((*base, "then"), node.then, allow_hangup=True)
    return problems


KINDS = ("menu", "queue", "answer", "lookup")


def _located_errors(exc: ValidationError, located: yamlfile.Located) -> list[str]:
    """pydantic's errors at the YAML lines they concern (the node-kind tag is not a key)."""
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) >= 3 and loc[0] == "nodes" and loc[2] in KINDS:
            del loc[2]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("kind")
        extra = " (unknown key; check the spelling)" if err["type"] == "extra_forbidden" else ""
        key = ".".join(map(str, loc)) or "(top level)"
        problems.append(f"{located.where(tuple(loc))}: {key}: {err['msg']}{extra}")
    return problems


def load_menus(path: Path) -> MenuSet:
    """Read and check a menu file; raises ``yamlfile.DataError`` naming file and line."""
    located = yamlfile.load(path)
    try:
        menus = MenuSet.model_validate(located.data)
    except ValidationError as exc:
        raise yamlfile.DataError(_located_errors(exc, located)) from None
    menus._registry = load_languages(path.parent)  # the registry beside the menu file
    problems = _check(menus, located)
    if problems:
        raise yamlfile.DataError(problems)
    return menus


def check_queues(menus: MenuSet, path: Path, known: set[str]) -> None:
    """Every queue the menus name must exist in queues/queues.yaml."""
    located = yamlfile.load(path)
    problems = []
    for lang, queue in menus.queues.items():
        if queue not in known:
            problems.append(f"{located.where(('queues', lang))}: queues.{lang}: unknown queue {queue!r}")
    for name, node in menus.nodes.items():
        if isinstance(node, QueueNode) and node.queue and node.queue not in known:
            problems.append(f"{located.where(('nodes', name, 'queue'))}: nodes.{name}.queue: unknown queue {node.queue!r}")
    if problems:
        raise yamlfile.DataError(problems)
