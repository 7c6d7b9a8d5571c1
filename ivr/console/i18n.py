"""The console's words in Korean and English; each user reads the language of ``users.language``."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("ko", "en")

# key -> (Korean, English)
TEXTS: dict[str, tuple[str, str]] = {
    "site": ("120 다산콜센터", "120 Dasan Call Center"),
    "sign_in": ("로그인", "Sign in"),
    "sign_out": ("로그아웃", "Sign out"),
    "username": ("아이디", "Username"),
    "password": ("비밀번호", "Password"),
    "wrong_login": ("아이디 또는 비밀번호가 맞지 않습니다.", "Wrong username or password."),
    "language": ("언어", "Language"),
    "nav_agent": ("상담", "Agent console"),
    "nav_admin": ("관리", "Admin"),
    "nav_reviewer": ("녹취 검토", "Recordings"),
    "nav_wallboard": ("현황판", "Wallboard"),
    "forbidden": ("이 화면을 볼 권한이 없습니다.", "Your role may not open this page."),
    # agent console
    "state": ("상태", "State"),
    "ready": ("대기(수신 가능)", "Ready"),
    "pause": ("이석", "Pause"),
    "pause_reason": ("이석 사유", "Pause reason"),
    "reason_break": ("휴식", "Break"),
    "reason_lunch": ("식사", "Lunch"),
    "reason_training": ("교육", "Training"),
    "reason_aftercall": ("후처리", "After-call work"),
    "log_out_queue": ("업무 종료", "Log out of queues"),
    "st_available": ("수신 가능", "available"),
    "st_on_call": ("통화 중", "on call"),
    "st_paused": ("이석", "paused"),
    "st_logged_out": ("로그아웃", "logged out"),
    "st_wrapup": ("후처리", "wrap-up"),
    "st_ringing": ("호출 중", "ringing"),
    "st_requested": ("요청 보냄", "request sent"),
    "current_call": ("현재 상담", "Current contact"),
    "no_call": ("연결된 통화가 없습니다.", "No call right now."),
    "call_offered": ("전화가 옵니다", "Call offered"),
    "call_connected": ("통화 연결됨", "Call connected"),
    "caller": ("발신번호", "Caller"),
    "queue": ("대기열", "Queue"),
    "earlier_inquiries": ("이전 문의 내역", "Earlier inquiries"),
    "no_earlier": ("이전 문의가 없습니다.", "No earlier inquiries."),
    "record_form": ("상담 기록", "Counselling record"),
    "category": ("분류", "Category"),
    "notes": ("상담 내용", "Notes"),
    "resolution": ("처리 결과", "Resolution"),
    "res_answered": ("안내 완료", "Answered"),
    "res_transferred": ("부서 이관", "Transferred to department"),
    "res_callback": ("회신 예정", "Callback promised"),
    "res_unresolved": ("미해결", "Unresolved"),
    "save": ("저장", "Save"),
    "saved": ("저장했습니다.", "Saved."),
    "inbox": ("문자·채팅함", "SMS / chat inbox"),
    "reply": ("답장", "Reply"),
    "send": ("보내기", "Send"),
    "sent": ("보냈습니다.", "Sent."),
    "empty_inbox": ("새 메시지가 없습니다.", "No messages."),
    "kb_search": ("지식 검색 (이전 상담·녹취)", "Knowledge search (earlier records and transcripts)"),
    "search": ("검색", "Search"),
    "no_results": ("결과가 없습니다.", "No results."),
    "date": ("일시", "Date"),
    "channel": ("채널", "Channel"),
    "contact": ("문의", "Contact"),
    # admin
    "admin_title": ("설정 관리", "Configuration"),
    "queues_summary": ("대기열과 운영 시간", "Queues and opening hours"),
    "hours": ("운영 시간", "Hours"),
    "strategy": ("배분 방식", "Strategy"),
    "members": ("상담원 (숙련도)", "Agents (proficiency)"),
    "open_now": ("운영 중", "Open now"),
    "closed_now": ("운영 종료", "Closed now"),
    "edit_file": ("설정 파일 편집", "Edit a configuration file"),
    "file": ("파일", "File"),
    "comment": ("변경 사유", "Reason for the change"),
    "validate": ("검증", "Validate"),
    "apply": ("저장 후 적용", "Save and apply"),
    "valid": ("검증 통과", "Valid"),
    "invalid": ("오류가 있어 적용하지 않았습니다", "Not applied: errors"),
    "applied": ("적용 완료", "Applied"),
    "written": ("저장됨, Asterisk 적용 대기", "Saved; Asterisk apply queued"),
    "failed": ("실패", "Failed"),
    "no_changes": ("변경 사항이 없습니다.", "Nothing changed."),
    "history": ("변경 이력", "Change history"),
    "author": ("변경자", "Author"),
    "status": ("상태", "Status"),
    "diff": ("변경 내용", "Diff"),
    "prompts": ("안내 멘트 업로드", "Upload a prompt"),
    "prompt_name": ("멘트 이름", "Prompt name"),
    "upload": ("업로드", "Upload"),
    "uploaded": ("변환하여 저장했습니다", "Converted and saved"),
    # reviewer
    "find_recordings": ("녹취 찾기", "Find recordings"),
    "from": ("시작일", "From"),
    "to": ("종료일", "To"),
    "agent": ("상담원", "Agent"),
    "satisfaction": ("만족도", "Satisfaction"),
    "words": ("녹취 내용 단어", "Words in the transcript"),
    "any": ("전체", "Any"),
    "duration": ("길이", "Duration"),
    "open": ("열기", "Open"),
    "player": ("녹취 재생", "Recording player"),
    "transcript": ("녹취록", "Transcript"),
    "no_transcript": ("녹취록이 없습니다.", "No transcript."),
    "play": ("재생", "Play"),
    "pause_audio": ("일시정지", "Pause"),
    "qa_form": ("품질 평가", "Quality review"),
    "qa_greeting": ("인사·응대", "Greeting and manner"),
    "qa_accuracy": ("안내 정확성", "Accuracy"),
    "qa_empathy": ("공감·경청", "Empathy and listening"),
    "qa_resolution": ("문제 해결", "Resolution"),
    "qa_total": ("총점", "Total"),
    "qa_saved": ("평가를 저장했습니다.", "Review saved."),
    "reviews": ("평가 기록", "Reviews"),
    "review_comment": ("평가 의견", "Comment"),
    # wallboard
    "wallboard": ("실시간 현황판", "Live wallboard"),
    "waiting": ("대기 호", "Waiting"),
    "longest_wait": ("최장 대기", "Longest wait"),
    "agents_available": ("수신 가능", "Available"),
    "agents_on_call": ("통화 중", "On call"),
    "agents_paused": ("이석", "Paused"),
    "service_level": ("서비스 레벨", "Service level"),
    "abandon_rate": ("포기율", "Abandoned"),
    "avg_satisfaction": ("평균 만족도", "Avg. satisfaction"),
    "today_total": ("오늘 접수", "Today's contacts"),
    "by_hour": ("시간대별 (오늘)", "Today by hour"),
    "by_channel": ("채널별", "By channel"),
    "by_language": ("언어별", "By language"),
    "updated": ("갱신", "Updated"),
    "live": ("실시간 연결", "live"),
    "offline": ("연결 끊김", "disconnected"),
}


def translator(language: str) -> Callable[[str], str]:
    index = 0 if language == "ko" else 1

    def t(key: str) -> str:
        pair = TEXTS.get(key)
        return pair[index] if pair else key

    return t


def catalogue(language: str) -> dict[str, str]:
    """Every text in one language (the pages' scripts read it from a JSON blob)."""
    t = translator(language)
    return {key: t(key) for key in TEXTS}
