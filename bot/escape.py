"""Escaping for each output, in one place. Every lead field is typed by the public: in every output
it must stay text — no mention, link, tag or header that the template did not put there.

Templates never call these: each Jinja environment in render.py applies one of them to every
`{{ value }}`, except values wrapped in `Trusted` (built by leadbot from rules.toml).
"""

from __future__ import annotations

import re
import unicodedata

# A word joiner (U+2060) is invisible, but no autolinker reads "https:\u2060//" as a link.
_SCHEME = re.compile(r"(?i)\b(https?|ftp|file|javascript|data|vbscript|ssh|sftp|wss?)(:)(/*)")
_WWW = re.compile(r"(?i)\bwww\.")
_MD_ANYWHERE = re.compile(r"([\\`*_\[\]<>~|!])")
_MD_LINE_START = re.compile(r"(?m)^(\s*)(?:([-+#>=])|(\d+)([.)]))")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
# RFC 2047 encoded words ("=?utf-8?q?...?="): some Python versions decode them while folding a
# header and would write a decoded CR LF raw (CVE-2024-6923). Broken up, they stay text.
_ENCODED_WORD = re.compile(r"=\?")
# What spam filters read as words in disguise (SpamAssassin's UNICODE_OBFU_ZW, SUSP_UTF8_WORD_*):
# zero-width characters after a Latin letter, digit or space, where they join or break nothing
# (between emoji and in Persian or Indic text they stay), and letters from the mathematical
# alphabets ("𝕰𝖛𝖊"), which are read as the plain letters they are styled from.
_DISGUISE = re.compile(r"(?<=[A-Za-z0-9\s])[\u200b-\u200d\ufeff]+|[\U0001d400-\U0001d7ff]+")


class Trusted(str):
    """Text leadbot wrote itself (a Slack mention of a configured manager, a configured link):
    passed through unescaped."""

    __slots__ = ()


def defang(text: str) -> str:
    """Stop clients from turning a URL typed by the public into a live link."""
    text = _SCHEME.sub(lambda m: m[1] + m[2] + "\u2060" + m[3], text)
    return _WWW.sub(lambda m: m[0][:3] + "\u2060.", text)


def plain(text: str) -> str:
    """Plain text (email body, Slack plain_text, terminal): no control characters, no live URLs,
    no words in disguise."""
    text = _CONTROL.sub("", text)
    if not text.isascii():  # most text is: spare it the search
        text = _DISGUISE.sub(_undisguise, text)
    return defang(text)


def _undisguise(match: re.Match[str]) -> str:
    return unicodedata.normalize("NFKC", match[0]) if match[0] > "\uffff" else ""


def one_line(text: str) -> str:
    """An email header or a title: one line, whatever the input held, and no encoded words."""
    return _ENCODED_WORD.sub("=\u2060?", re.sub(r"\s+", " ", plain(text)))


def slack(text: str) -> str:
    """Slack mrkdwn: `& < >` are the only control characters (api.slack.com/reference/surfaces/
    formatting#escaping); with them escaped no `<!channel>` or `<url|label>` can form."""
    text = plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def markdown(text: str) -> str:
    """Adaptive Card TextBlocks render a Markdown subset (bold, italic, lists, links): escape what
    could start any of them."""
    text = _MD_ANYWHERE.sub(r"\\\1", plain(text))
    # A list marker is escaped on its punctuation: "\-", "1\." (CommonMark escapes only that).
    return _MD_LINE_START.sub(lambda m: m[1] + ("\\" + m[2] if m[2] else m[3] + "\\" + m[4]), text)


def truncate(text: str, limit: int, marker: str = "… (truncated)") -> str:
    """Cut to `limit` characters with a visible marker, never inside an escape sequence."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(marker))]
    cut = re.sub(r"&[a-z]{0,4}$", "", cut)  # no half of "&amp;"
    if (len(cut) - len(cut.rstrip("\\"))) % 2:
        cut = cut[:-1]  # no half of a Markdown escape "\\x"
    return cut.rstrip() + marker
