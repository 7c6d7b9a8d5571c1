"""The /call page's words: every text in Korean and English; the labels (buttons, headings)
also in the foreign-language lines of the 120+9 branch (zh, ja, vi, mn). A text a language
lacks is shown in English."""

from __future__ import annotations

PAGE_LANGUAGES = ("ko", "en", "zh", "ja", "vi", "mn")

# key -> {language: text}
TEXTS: dict[str, dict[str, str]] = {
    "app_name": {"ko": "120 다산콜센터", "en": "120 Dasan Call Center", "zh": "120 茶山呼叫中心",
                 "ja": "120 タサン コールセンター", "vi": "Tổng đài 120 Dasan", "mn": "120 Дасан дуудлагын төв"},
    "language": {"ko": "언어", "en": "Language", "zh": "语言", "ja": "言語", "vi": "Ngôn ngữ", "mn": "Хэл"},
    "video_call": {"ko": "수어 영상 상담", "en": "Sign-language video call", "zh": "手语视频咨询",
                   "ja": "手話ビデオ相談", "vi": "Gọi video ngôn ngữ ký hiệu", "mn": "Дохионы хэлний видео дуудлага"},
    "voice_call": {"ko": "음성 전화", "en": "Voice call", "zh": "语音通话", "ja": "音声通話",
                   "vi": "Cuộc gọi thoại", "mn": "Дуут дуудлага"},
    "chat": {"ko": "채팅 상담", "en": "Web chat", "zh": "在线聊天", "ja": "チャット相談",
             "vi": "Trò chuyện trực tuyến", "mn": "Чат"},
    "report": {"ko": "불편 신고 (사진)", "en": "Report a problem (photo)", "zh": "问题举报（照片）",
               "ja": "問題の報告（写真）", "vi": "Báo cáo sự cố (ảnh)", "mn": "Асуудал мэдээлэх (зураг)"},
    "track": {"ko": "처리 상황 조회", "en": "Check a request", "zh": "查询处理进度", "ja": "処理状況の確認",
              "vi": "Kiểm tra yêu cầu", "mn": "Хүсэлт шалгах"},
    "hang_up": {"ko": "끊기", "en": "Hang up", "zh": "挂断", "ja": "切る", "vi": "Gác máy", "mn": "Таслах"},
    "mute": {"ko": "음소거", "en": "Mute", "zh": "静音", "ja": "ミュート", "vi": "Tắt tiếng", "mn": "Дуугүй"},
    "keypad": {"ko": "키패드", "en": "Keypad", "zh": "拨号键盘", "ja": "キーパッド", "vi": "Bàn phím", "mn": "Товчлуур"},
    "tracking_number": {"ko": "접수 번호", "en": "Tracking number", "zh": "受理编号", "ja": "受付番号",
                        "vi": "Mã số theo dõi", "mn": "Бүртгэлийн дугаар"},
    "check": {"ko": "조회", "en": "Check", "zh": "查询", "ja": "確認", "vi": "Kiểm tra", "mn": "Шалгах"},
    "send": {"ko": "보내기", "en": "Send", "zh": "提交", "ja": "送信", "vi": "Gửi", "mn": "Илгээх"},
    "description": {"ko": "내용", "en": "What is wrong", "zh": "内容", "ja": "内容", "vi": "Nội dung", "mn": "Агуулга"},
    "photo": {"ko": "사진", "en": "Photo", "zh": "照片", "ja": "写真", "vi": "Ảnh", "mn": "Зураг"},
    "address": {"ko": "위치(주소)", "en": "Where (address)", "zh": "地点（地址）", "ja": "場所（住所）",
                "vi": "Địa điểm (địa chỉ)", "mn": "Байршил (хаяг)"},
    "category": {"ko": "분야", "en": "Kind of problem", "zh": "类别", "ja": "種類", "vi": "Loại", "mn": "Төрөл"},
    # messages: Korean and English
    "intro": {"ko": "청각·언어 장애인은 수어 영상으로, 누구나 음성·채팅으로 상담받을 수 있습니다.",
              "en": "Deaf and hard-of-hearing citizens can talk to us in sign language by video; anyone can call or chat."},
    "connecting": {"ko": "연결 중입니다…", "en": "Connecting…"},
    "waiting": {"ko": "상담원을 기다리는 중입니다. 화면을 닫지 마세요.", "en": "Waiting for a counsellor. Please keep this page open."},
    "in_call": {"ko": "상담 중", "en": "In call"},
    "ended": {"ko": "통화가 끝났습니다.", "en": "The call has ended."},
    "err_permission": {"ko": "카메라·마이크 사용이 허용되지 않았습니다. 브라우저 주소창의 권한 설정에서 허용한 뒤 다시 시도하거나, 채팅 상담을 이용하세요.",
                       "en": "Camera or microphone access was denied. Allow it in your browser's site settings and try again, or use the web chat."},
    "err_no_camera": {"ko": "카메라를 찾을 수 없습니다. 카메라를 연결하거나, 음성 전화 또는 채팅 상담을 이용하세요.",
                      "en": "No camera was found. Connect one, or use a voice call or the web chat."},
    "err_no_microphone": {"ko": "마이크를 찾을 수 없습니다. 채팅 상담을 이용하세요.",
                          "en": "No microphone was found. Please use the web chat."},
    "err_network": {"ko": "네트워크 연결이 끊겼습니다. 연결을 확인한 뒤 다시 걸어 주세요. 급하면 채팅 상담을 이용하세요.",
                    "en": "The network connection dropped. Check your connection and call again, or use the web chat."},
    "err_no_agent": {"ko": "지금은 연결 가능한 상담원이 없습니다. 채팅 상담을 이용하시거나 잠시 후 다시 걸어 주세요.",
                     "en": "No counsellor is available right now. Use the web chat or call again a little later."},
    "err_closed": {"ko": "수어 영상 상담 시간(평일 09:00-18:00)이 아닙니다. 채팅 상담이나 불편 신고를 이용하세요.",
                   "en": "Sign-language video counselling is closed now (weekdays 09:00-18:00). Use the web chat or report a problem."},
    "err_busy": {"ko": "요청이 많습니다. 잠시 후 다시 시도하세요.", "en": "Too many calls right now; please try again shortly."},
    "err_unavailable": {"ko": "전화 연결 서비스를 사용할 수 없습니다. 채팅 상담을 이용하세요.",
                        "en": "The call service is unavailable. Please use the web chat."},
    "err_expired": {"ko": "페이지가 오래되었습니다. 새로 고친 뒤 다시 시도하세요.", "en": "This page has expired. Reload it and try again."},
    "err_unsupported": {"ko": "이 브라우저는 영상 통화를 지원하지 않습니다. 최신 Chrome, Edge, Safari 또는 Firefox를 사용하세요.",
                        "en": "This browser cannot make video calls. Use a recent Chrome, Edge, Safari or Firefox."},
    "err_disabled": {"ko": "이 사이트에서는 브라우저 전화가 아직 켜져 있지 않습니다.", "en": "Calls from the browser are not enabled on this site."},
    "alt_chat": {"ko": "채팅 상담으로 가기", "en": "Go to the web chat"},
    "report_done": {"ko": "접수되었습니다. 접수 번호:", "en": "Received. Your tracking number:"},
    "track_none": {"ko": "해당 번호의 접수 내역이 없습니다.", "en": "No request has that number."},
    "track_status": {"ko": "처리 상태", "en": "Status"},
    "offline": {"ko": "오프라인입니다. 연결되면 다시 시도하세요.", "en": "You are offline. Try again when connected."},
    "survey_q": {"ko": "상담에 만족하셨나요? (1 불만 ~ 5 매우 만족)", "en": "How was your counselling? (1 poor to 5 very good)"},
    "survey_thanks": {"ko": "응답해 주셔서 감사합니다.", "en": "Thank you for your answer."},
}


def page_texts(lang: str) -> dict[str, str]:
    return {key: by_lang.get(lang) or by_lang["en"] for key, by_lang in TEXTS.items()}
