"""Keep secrets out of logs: credentials, tokens, passwords and password hashes.

``install()`` wraps the logging record factory, so every record, whichever
logger or handler it goes through, has its message redacted when it holds
something that looks like a secret. Records without one are left untouched.
"""

from __future__ import annotations

import logging
import re

MASK = "[REDACTED]"

_PATTERNS = [
    # Authorization headers in any rendering (raw, dict repr, WSGI environ).
    (re.compile(r"(?i)((?:http_)?(?:proxy[-_])?authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,}]+"),
     r"\1" + MASK),
    (re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    # JSON Web Tokens wherever they appear.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    # password=..., refresh_token=..., "password": "..." (query strings, forms, JSON).
    (re.compile(r"(?i)((?:password|passwd|refresh_token|access_token|token|secret)"
                r"['\"]?\s*[:=]\s*['\"]?)[^&'\"\s,}]+"), r"\1" + MASK),
    # Robot tokens (auth/robots.py): the id stays, so a log still says which one.
    (re.compile(r"\b(ocr_[0-9a-f]{12}_)[A-Za-z0-9_-]{43}"), r"\1" + MASK),
    # bcrypt hashes.
    (re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}"), MASK),
]


# Every pattern above matches only where this one does: one search clears the
# common case (an access-log line, most messages) instead of six substitutions.
_ANY_SECRET = re.compile(r"(?i)authorization|basic|bearer|eyJ|passw|token|secret|ocr_|\$2[aby]\$")
# The same words for ASCII text (every access-log line): on ASCII, str.lower() is what
# (?i) does, and ten substring tests cost a seventh of the case-insensitive scan.
# Other text keeps the regex: (?i) also folds a few non-ASCII letters (the Kelvin
# sign, the long s, the dotless i) onto these ASCII ones, lower() does not.
_WORDS = ("authorization", "basic", "bearer", "eyj", "passw", "token", "secret", "ocr_",
          "$2a$", "$2b$", "$2y$")


def _may_hold_secret(text: str) -> bool:
    if text.isascii():
        lowered = text.lower()
        for word in _WORDS:
            if word in lowered:
                return True
        return False
    return _ANY_SECRET.search(text) is not None


def redact(text: str) -> str:
    if not _may_hold_secret(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_installed = False


def install() -> None:
    """Redact every log record created from now on, in this process."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):  # type: ignore[no-untyped-def]
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if redact(text) != text:
                # The traceback would print the exception's message: replace it.
                exc = record.exc_info[1]
                try:
                    exc.args = (redact(text),)
                except Exception:
                    record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
