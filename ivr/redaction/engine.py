"""Masking personal data in text by the rules of ``rules.yaml`` (data, not code).

Numbers are found as runs of neighbouring number words (digits, dashes, Sino-Korean digit
words such as 공일공/영일공), so a phone number said as words, written with dashes, or
cut across transcript segments is one number. Each run's digits are checked against the
number rules in order; the first that matches masks every token of the run. Anything no
rule matches (dates, times, tracking numbers, amounts) stays as it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

RULES_FILE = Path(__file__).with_name("rules.yaml")
DIGIT_WORDS = {"공": "0", "영": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5", "육": "6",
               "륙": "6", "칠": "7", "팔": "8", "구": "9"}
_SYLLABLES = "".join(DIGIT_WORDS)
# A number token: digits/dashes/dots/brackets and digit words, then perhaps a particle or
# counter stuck to it ("010-1234-5678로", "일이삼사번"): the tail is kept, not read as digits.
_JOINERS = ("", "에", "의", ",", "에,")
_NUMBER_TOKEN = re.compile(rf"^([+(]?[0-9{_SYLLABLES}][0-9{_SYLLABLES}\-.)]*)(.*)$")


class RulesError(ValueError):
    """The rules file is not valid; the message names the rule and the field."""


@dataclass(frozen=True)
class NumberRule:
    name: str
    label: str
    lengths: frozenset[int]
    pattern: re.Pattern[str]
    luhn: bool = False
    birth_date: bool = False
    context: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    window: int = 30

    def matches(self, digits: str, before: str) -> bool:
        if len(digits) not in self.lengths or not self.pattern.fullmatch(digits):
            return False
        if self.luhn and not _luhn(digits):
            return False
        if self.birth_date and not _is_yymmdd(digits[:6]):
            return False
        near = before[-self.window:].lower()
        if self.context and not any(word.lower() in near for word in self.context):
            return False
        return not any(word.lower() in near for word in self.unless)


@dataclass(frozen=True)
class PatternRule:
    name: str
    label: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Rules:
    numbers: tuple[NumberRule, ...]
    patterns: tuple[PatternRule, ...]


@dataclass
class _Token:
    segment: int
    start: int
    end: int
    digits: str  # "" for a word that is not part of a number
    tail: str = ""
    label: str | None = field(default=None)
    show: bool = False  # the run's first token in its segment carries the label


def _mark(tokens: list[_Token], label: str) -> None:
    seen: set[int] = set()
    for token in tokens:
        token.label, token.show = label, token.segment not in seen
        seen.add(token.segment)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _is_yymmdd(six: str) -> bool:
    try:
        date(2000 + int(six[:2]), int(six[2:4]), int(six[4:6]))
    except ValueError:
        return False
    return True


def _field(rule: dict[str, Any], key: str, where: str) -> Any:
    if key not in rule:
        raise RulesError(f"{where}: '{key}' is required / 필수 항목입니다")
    return rule[key]


def parse_rules(data: Any, source: str = "rules") -> Rules:
    if not isinstance(data, dict):
        raise RulesError(f"{source}: expected a mapping with 'numbers' and 'patterns'")
    numbers, patterns = [], []
    for i, rule in enumerate(data.get("numbers") or []):
        where = f"{source}: numbers[{i}] {rule.get('name', '?') if isinstance(rule, dict) else ''}".strip()
        if not isinstance(rule, dict):
            raise RulesError(f"{where}: expected a mapping")
        try:
            numbers.append(NumberRule(
                name=str(_field(rule, "name", where)), label=str(_field(rule, "label", where)),
                lengths=frozenset(int(n) for n in _field(rule, "lengths", where)),
                pattern=re.compile(str(rule.get("pattern", r"\d+"))),
                luhn=bool(rule.get("luhn", False)), birth_date=bool(rule.get("birth_date", False)),
                context=tuple(str(w) for w in rule.get("context") or ()),
                unless=tuple(str(w) for w in rule.get("unless") or ()),
                window=int(rule.get("window", 30))))
        except (re.error, TypeError, ValueError) as exc:
            raise RulesError(f"{where}: {exc}") from exc
    for i, rule in enumerate(data.get("patterns") or []):
        where = f"{source}: patterns[{i}]"
        if not isinstance(rule, dict):
            raise RulesError(f"{where}: expected a mapping")
        try:
            patterns.append(PatternRule(str(_field(rule, "name", where)), str(_field(rule, "label", where)),
                                        re.compile(str(_field(rule, "regex", where)), re.IGNORECASE)))
        except re.error as exc:
            raise RulesError(f"{where}: {exc}") from exc
    return Rules(tuple(numbers), tuple(patterns))


_CACHE: dict[tuple[str, float], Rules] = {}


def load_rules(path: Path | None = None) -> Rules:
    """The rules of ``path`` (default: the shipped rules.yaml), re-read when the file changes."""
    path = path or RULES_FILE
    key = (str(path), path.stat().st_mtime)
    if key not in _CACHE:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RulesError(f"{path}: {exc}") from exc
        _CACHE[key] = parse_rules(data, str(path))
    return _CACHE[key]


def _number_token(word: str) -> tuple[str, str] | None:
    """(digits, tail) when ``word`` is a number word, else None."""
    match = _NUMBER_TOKEN.match(word)
    if not match:
        return None
    core, tail = match.groups()
    digits = "".join(DIGIT_WORDS.get(ch, ch) for ch in core if ch.isdigit() or ch in DIGIT_WORDS)
    # A lone digit word with a tail is an ordinary word ("이것", "일정", "사람"), not a number.
    if not digits or (tail and not any(ch.isdigit() for ch in core) and len(core) < 2):
        return None
    return digits, tail


def mask_segments(texts: Sequence[str], rules: Rules | None = None) -> list[str]:
    """Each text masked; a number may run on from one text (segment) into the next."""
    rules = rules or load_rules()
    masked = []
    for text in texts:
        for rule in rules.patterns:
            text = rule.regex.sub(rule.label, text)
        masked.append(text)
    tokens = [_Token(i, m.start(), m.end(), *(_number_token(m.group()) or ("", "")))
              for i, text in enumerate(masked) for m in re.finditer(r"\S+", text)]
    run: list[_Token] = []
    for index in range(len(tokens) + 1):
        token = tokens[index] if index < len(tokens) else None
        if token is not None and token.digits:
            run.append(token)
            # a particle ends the number ("...5678로 연락"), except the ones said between its
            # parts ("공일공에 일이삼사에 ...", "1234, 5678")
            if token.tail in _JOINERS:
                continue
        if run:
            _label_run(run, masked, rules)
            run = []
    out = []
    for i, text in enumerate(masked):
        pieces, last, labelled = [], 0, False
        for token in (t for t in tokens if t.segment == i and t.label):
            pieces.append(text[last:token.start])
            if token.show:
                pieces.append(token.label or "")
            labelled = True
            pieces.append(token.tail)
            last = token.end
        pieces.append(text[last:])
        out.append(re.sub(r" {2,}", " ", "".join(pieces)).strip() if labelled else text)
    return out


def _label_run(run: list[_Token], texts: list[str], rules: Rules) -> None:
    digits = "".join(t.digits for t in run)
    first = run[0]
    before = " ".join(texts[:first.segment]) + " " + texts[first.segment][:first.start]
    for rule in rules.numbers:
        if rule.matches(digits, before):
            _mark(run, rule.label)
            return
    # The whole run is no known number: a known number may still end it (a date said before it).
    for cut in range(1, len(run)):
        tail_digits = "".join(t.digits for t in run[cut:])
        lead = before + " " + " ".join(texts[t.segment][t.start:t.end] for t in run[:cut])
        for rule in rules.numbers:
            if rule.matches(tail_digits, lead):
                _mark(run[cut:], rule.label)
                return


def mask_text(text: str, rules: Rules | None = None) -> str:
    """One text masked (lines kept)."""
    return "\n".join(mask_segments([line], rules)[0] for line in text.split("\n"))
