"""PII redaction: e-mail addresses, public IP addresses and phone numbers become stable placeholders.

Only public (`ipaddress.is_global`) addresses are personal data worth removing; private ranges and loopback are
configuration examples and stay. Version strings (1.2.3.4.5, v10.0.0.1) are not addresses.
"""

from __future__ import annotations

import ipaddress
import re

from gristmill.conf.schema import PIIConfig
from gristmill.tasks.clean.base import Formatter

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Not preceded by a word character or a dot (v10.0.0.1, 1.1.2.3.4) and not followed by .digit or a word character.
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\w)")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# International (+country code) or North-American (xxx) xxx-xxxx style; plain digit runs are too often ids.
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])"
)
PLACEHOLDERS = {"email": "<EMAIL>", "ip": "<IP_ADDRESS>", "phone": "<PHONE>"}


def _is_public(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False


class PIIFormatter(Formatter):
    name = "pii"

    def __init__(self, cfg: PIIConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def format(self, text: str) -> str:
        if self.cfg.emails:
            text = self._sub(EMAIL, text, "email")
        if self.cfg.ips:
            text = self._sub(IPV4, text, "ip", _is_public)
            text = self._sub(IPV6, text, "ip", _is_public)
        if self.cfg.phones:
            text = self._sub(PHONE, text, "phone", lambda m: 9 <= sum(ch.isdigit() for ch in m) <= 15)
        return text

    def _sub(self, pattern: re.Pattern[str], text: str, kind: str, keep_if=None) -> str:  # noqa: ANN001
        def replace(match: re.Match[str]) -> str:
            if keep_if is not None and not keep_if(match.group()):
                return match.group()
            self.stats[kind] += 1
            return PLACEHOLDERS[kind]

        return pattern.sub(replace, text)
