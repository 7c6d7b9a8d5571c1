"""Personal data masked by the shipped rules: a table of Korean and English cases (digits,
number words, mixed, split across segments) and of numbers that must stay (dates, times,
tracking numbers, amounts); the ``dasan redact`` command; rules files with mistakes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ivr.redaction.engine import RulesError, load_rules, mask_segments, mask_text
from ivr.speech.recognizer import Segment
from ivr.speech.worker import masked

DASAN = str(Path(sys.executable).with_name("dasan"))  # the console script pip installed

MASKED = [
    # (text, what must be gone, the label that replaces it)
    ("제 번호는 010-1234-5678입니다", "1234", "[전화번호]"),
    ("제 번호는 01012345678 이에요", "01012345678", "[전화번호]"),
    ("제 번호는 공일공 일이삼사 오육칠팔입니다", "일이삼사", "[전화번호]"),
    ("영일공 1234 5678로 연락주세요", "5678", "[전화번호]"),
    ("영일공에 일이삼사에 오육칠팔", "오육칠팔", "[전화번호]"),
    ("집 전화는 02-345-6789 입니다", "6789", "[전화번호]"),
    ("call me at 010 9876 5432 please", "9876", "[전화번호]"),
    ("+82 10-1234-5678", "5678", "[전화번호]"),
    ("주민번호는 900101-1234567 입니다", "1234567", "[주민등록번호]"),
    ("구공공일공일 일이삼사오육칠", "일이삼사오육칠", "[주민등록번호]"),
    ("카드번호 4111 1111 1111 1111 이요", "1111", "[카드번호]"),
    ("card 5500-0000-0000-0004", "0004", "[카드번호]"),
    ("농협 계좌 351-1234-5678-12 로 입금해 주세요", "5678", "[계좌번호]"),
    ("bank account 110234567890", "110234567890", "[계좌번호]"),
    ("메일은 hong.gildong@example.co.kr 입니다", "hong.gildong", "[이메일]"),
    ("email me: Jane.Doe+311@city.gov", "Jane.Doe", "[이메일]"),
    ("hong 골뱅이 naver 닷 com 으로 보내주세요", "naver", "[이메일]"),
]

KEPT = [
    "2026-12-07 14:30에 방문하겠습니다",
    "12월 7일 오후 3시에 전화 주세요",
    "운송장 번호 6091 2345 6789 조회해 주세요",
    "택배 송장 4111111111111111 확인",
    "tracking number 1Z999AA10123456784",
    "버스 470번 타시면 됩니다",
    "이 일은 사람이 해야 해요",
    "오늘 일이 많아서 사정이 어려워요",
    "금액은 150000원입니다",
    "접수번호 2026-1207-0042",
    "order 20261207 at 09:30",
    "9 4111 1111 1111 1112",  # a 16-digit number that fails the card check digit
]


@pytest.mark.parametrize(("text", "secret", "label"), MASKED)
def test_personal_data_is_masked(text: str, secret: str, label: str) -> None:
    out = mask_text(text)
    assert secret not in out and label in out, out


@pytest.mark.parametrize("text", KEPT)
def test_other_numbers_stay(text: str) -> None:
    assert mask_text(text) == text


def test_a_number_said_across_segments_is_masked_in_each() -> None:
    out = mask_segments(["네 제 전화번호는 공일공", "일이삼사", "오육칠팔 입니다", "버스 470번이요"])
    assert out == ["네 제 전화번호는 [전화번호]", "[전화번호]", "[전화번호] 입니다", "버스 470번이요"]
    # without the first part the rest is no phone number and stays
    assert mask_segments(["일이삼사", "오육칠팔 입니다"]) == ["일이삼사", "오육칠팔 입니다"]


def test_the_worker_masks_per_speaker_in_time_order() -> None:
    segments = [Segment("caller", 0.0, 1.0, "제 번호는 공일공", 0.9), Segment("agent", 1.0, 1.5, "네", 0.9),
                Segment("caller", 1.5, 3.0, "일이삼사 오육칠팔", 0.9), Segment("agent", 3.0, 4.0, "12월 7일", 0.9)]
    out = masked(segments)
    assert [s.text for s in out] == ["제 번호는 [전화번호]", "네", "[전화번호]", "12월 7일"]
    assert [(s.speaker, s.start, s.end) for s in out] == [(s.speaker, s.start, s.end) for s in segments]


def test_dasan_redact_prints_the_masked_text(tmp_path: Path) -> None:
    text = "제 번호는 공일공 일이삼사 오육칠팔입니다\n메일 a.b@example.com, 날짜 2026-12-07\n"
    out = subprocess.run([DASAN, "redact"], input=text, capture_output=True,
                         text=True, check=True)
    assert out.stdout == "제 번호는 [전화번호] 입니다\n메일 [이메일], 날짜 2026-12-07\n"
    # an admin's own rules file: a rule for 8-digit member numbers after "회원"
    rules = tmp_path / "rules.yaml"
    rules.write_text('numbers:\n  - {name: member, label: "[회원번호]", lengths: [8], context: [회원], window: 6}\n',
                     encoding="utf-8")
    out = subprocess.run([DASAN, "redact", "--rules", str(rules)],
                         input="회원 12345678, 날짜 20261207", capture_output=True, text=True, check=True)
    assert out.stdout == "회원 [회원번호], 날짜 20261207"


@pytest.mark.parametrize(("content", "message"), [
    ("numbers:\n  - {label: x, lengths: [8]}\n", "'name' is required"),
    ("numbers:\n  - {name: a, label: x, lengths: [8], pattern: '('}\n", r"numbers\[0\] a"),
    ("patterns:\n  - {name: e, label: x}\n", "'regex' is required"),
    ("- just a list\n", "expected a mapping"),
])
def test_a_bad_rules_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RulesError, match=message):
        load_rules(path)
    out = subprocess.run([DASAN, "redact", "--rules", str(path)], input="x",
                         capture_output=True, text=True)
    assert out.returncode == 2 and "error:" in out.stderr and out.stdout == ""
