"""What the citizen reads (SMS) or hears (IVR) about a service request, in six languages."""

from __future__ import annotations

from datetime import datetime

STATUS_WORD = {
    "ko": {"open": "처리 중", "closed": "처리 완료"},
    "en": {"open": "open, being handled", "closed": "closed, completed"},
    "zh": {"open": "处理中", "closed": "已办结"},
    "ja": {"open": "対応中", "closed": "対応完了"},
    "vi": {"open": "đang xử lý", "closed": "đã hoàn tất"},
    "mn": {"open": "шийдвэрлэгдэж байна", "closed": "шийдвэрлэгдсэн"},
}

# The caller languages (ivr/menus/languages.yaml) these texts are written in; another one
# reads Korean until its texts are added here.
LANGUAGES = tuple(STATUS_WORD)

RECEIVED = {
    "ko": "[{site}] {service} 접수되었습니다. 접수번호 {id}. 처리 상황은 전화로 접수번호를 눌러 확인하실 수 있습니다.",
    "en": "[{site}] Your {service} was received. Tracking number {id}. Call us and key in this number to hear its status.",
    "zh": "[{site}] 您的{service}已受理。受理编号 {id}。致电并输入此编号即可查询处理状态。",
    "ja": "[{site}] {service}を受け付けました。受付番号 {id}。お電話でこの番号を入力すると状況を確認できます。",
    "vi": "[{site}] Đã tiếp nhận {service} của bạn. Mã số {id}. Gọi cho chúng tôi và nhập mã số này để nghe tình trạng.",
    "mn": "[{site}] Таны {service} хүлээн авлаа. Дугаар {id}. Залгаад энэ дугаарыг оруулж явцыг сонсоорой.",
}

UPDATED = {
    "ko": "[{site}] 접수번호 {id} {service}: {status}.",
    "en": "[{site}] Tracking number {id}, {service}: {status}.",
    "zh": "[{site}] 受理编号 {id}（{service}）：{status}。",
    "ja": "[{site}] 受付番号 {id}（{service}）：{status}。",
    "vi": "[{site}] Mã số {id}, {service}: {status}.",
    "mn": "[{site}] Дугаар {id}, {service}: {status}.",
}

# Spoken by the IVR: digits are read one by one, so the number is spaced out.
SPOKEN = {
    "ko": "접수번호 {id}번, {service}의 처리 상태는 {status}입니다.",
    "en": "Tracking number {id}, {service}, is {status}.",
    "zh": "受理编号 {id}，{service}，状态：{status}。",
    "ja": "受付番号 {id}、{service}は、{status}です。",
    "vi": "Mã số {id}, {service}, tình trạng: {status}.",
    "mn": "Дугаар {id}, {service}: {status}.",
}

EXPECTED = {
    "ko": " 예상 처리일은 {date}입니다.",
    "en": " Expected by {date}.",
    "zh": " 预计完成日期：{date}。",
    "ja": " 完了予定日は{date}です。",
    "vi": " Dự kiến hoàn tất: {date}.",
    "mn": " Хүлээгдэж буй огноо: {date}.",
}

NOT_FOUND = {
    "ko": "입력하신 접수번호 {id}번을 찾을 수 없습니다. 번호를 확인하시고 다시 입력해 주십시오.",
    "en": "We could not find tracking number {id}. Please check the number and try again.",
    "zh": "找不到受理编号 {id}。请核对后重新输入。",
    "ja": "受付番号 {id} が見つかりません。番号をお確かめの上、もう一度入力してください。",
    "vi": "Không tìm thấy mã số {id}. Vui lòng kiểm tra và nhập lại.",
    "mn": "{id} дугаар олдсонгүй. Дугаараа шалгаад дахин оруулна уу.",
}


def lang(language: str | None) -> str:
    return language if language in LANGUAGES else "ko"


def _with_notes(text: str, notes: str | None) -> str:
    return f"{text} {notes.strip()}" if notes and notes.strip() else text


def received_sms(language: str, site: str, service: str, request_id: str) -> str:
    return RECEIVED[lang(language)].format(site=site, service=service, id=request_id)


def status_sms(language: str, site: str, service: str, request_id: str, status: str,
               notes: str | None, expected: datetime | None) -> str:
    language = lang(language)
    text = UPDATED[language].format(site=site, service=service, id=request_id,
                                    status=STATUS_WORD[language][status])
    if expected is not None and status == "open":
        text += EXPECTED[language].format(date=expected.date().isoformat())
    return _with_notes(text, notes)


def spoken_status(language: str, service: str, request_id: str, status: str,
                  notes: str | None, expected: datetime | None) -> str:
    language = lang(language)
    text = SPOKEN[language].format(id=" ".join(request_id), service=service,
                                   status=STATUS_WORD[language][status])
    if expected is not None and status == "open":
        text += EXPECTED[language].format(date=expected.date().isoformat())
    return _with_notes(text, notes)


def spoken_not_found(language: str, request_id: str) -> str:
    return NOT_FOUND[lang(language)].format(id=" ".join(request_id))
