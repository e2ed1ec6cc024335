"""Email over SMTP: multipart text + HTML. STARTTLS by default, implicit TLS on port 465, and
never a silent fall-back to plaintext. One connection is reused for a cycle's messages.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.charset import Charset
from email.header import Header
from email.message import Message as Mime
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formataddr, formatdate, parseaddr
from typing import Any

from .. import escape
from ..failures import DeliveryError, smtp_code
from ..models import Message

LOOPBACK = ("localhost", "127.0.0.1", "::1")
SUBJECT_LIMIT = 200  # characters: long enough for any real subject, short for every mail client
UTF8 = Charset("utf-8")  # made once: MIMEText makes one per part when given the name


class Headers(Compat32):
    """The classic policy, quicker to write a header that needs no folding: a short ASCII
    line is written as it is, the bytes the classic policy writes for it (it builds a `Header`
    for each, half the time of sending an email); anything else is left to it."""

    def fold(self, name: str, value: Any) -> str:
        if _plain(name, value):
            return f"{name}: {value}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if _plain(name, value):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


def _plain(name: str, value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.isascii()
        and len(name) + len(value) + 2 <= 78
        and "\n" not in value
        and "\r" not in value
    )


POLICY = Headers()


def compose(parts: dict[str, str], view: dict[str, Any], config: Any) -> Mime:
    # Built with the classic MIME classes: ten times quicker than EmailMessage, whose header
    # parsing we do not need, since every header value here is already a clean single line.
    msg: Any = MIMEMultipart("alternative", policy=POLICY)
    msg["Subject"] = _header(
        escape.truncate(escape.one_line(parts["subject"]).strip(), SUBJECT_LIMIT, "…") or "New lead"
    )
    if view.get("urgent"):
        # Read by Outlook (X-Priority, Importance) and by others (Priority, RFC 2156).
        msg["X-Priority"] = "1 (Highest)"
        msg["Importance"] = "High"
        msg["Priority"] = "urgent"
    msg.attach(MIMEText(parts["text"] + "\n", "plain", UTF8, policy=POLICY))  # type: ignore[arg-type]
    msg.attach(MIMEText(str(parts["html"]), "html", UTF8, policy=POLICY))  # type: ignore[arg-type]
    return msg  # type: ignore[no-any-return]


def _header(text: str) -> str | Header:
    """ASCII as it is; anything else as RFC 2047 encoded words. The text has no line breaks
    (escape.one_line), so nothing here can start a header of its own."""
    return text if text.isascii() else Header(text, "utf-8")


def message_id(ref: str, sender: str) -> str:
    """The same for every attempt at one delivery, so a resend after a crash is recognisable."""
    domain = sender.rpartition("@")[2].rstrip(">").strip() or "leadbot.invalid"
    return f"<leadbot.{hashlib.sha256(ref.encode()).hexdigest()[:32]}@{domain}>"


# Set by `stamp` on each email's own envelope, never taken from the composed one.
ENVELOPE = frozenset(
    {
        "content-type",
        "mime-version",
        "from",
        "to",
        "date",
        "message-id",
        "auto-submitted",
        "x-auto-response-suppress",
    }
)


def stamp(message: Message, sender: str) -> Mime:
    """Address the composed email for its target, in a new envelope around the composed parts:
    the composed email is never changed, so one serves every address a lead's email goes to.
    The envelope headers are set once, here, for every email leadbot sends."""
    composed: Any = message.payload
    msg: Any = MIMEMultipart("alternative", policy=POLICY)
    for name, value in composed.items():  # the subject and the urgency
        if name.lower() not in ENVELOPE:
            msg[name] = value
    msg["From"] = formataddr(parseaddr(sender), charset="utf-8")
    msg["To"] = _header(message.target.address)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id(message.ref, sender)
    # No out-of-office or other automatic reply to an automatic email (RFC 3834 section 5);
    # Exchange and Microsoft 365 go by X-Auto-Response-Suppress.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    for part in composed.get_payload():
        msg.attach(part)
    return msg  # type: ignore[no-any-return]


class EmailChannel:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        tls: str = "",
        username: str = "",
        password: str = "",
        ca_file: str = "",
        timeout: float = 30,
    ) -> None:
        self.host, self.sender = host, sender
        self.port = port or (465 if tls == "implicit" else 587)
        self.tls = tls or ("implicit" if self.port == 465 else "starttls")
        self.username, self.password = username, password
        self.context = ssl.create_default_context(cafile=ca_file or None)
        self.timeout = timeout
        self.smtp: smtplib.SMTP | None = None

    def send(self, message: Message) -> str:
        msg = stamp(message, self.sender)
        for attempt in (1, 2):
            reused = self.smtp is not None
            try:
                smtp = self.smtp or self._connect()
                smtp.send_message(msg, to_addrs=[message.target.address])
                return str(msg["Message-ID"])
            except smtplib.SMTPServerDisconnected:
                self.close()
                if reused and attempt == 1:
                    continue  # the kept connection had gone stale: one fresh try
                raise DeliveryError("the mail server closed the connection", True) from None
            except smtplib.SMTPRecipientsRefused as exc:
                code = next(iter(exc.recipients.values()))[0]
                raise DeliveryError(
                    f"the mail server refused the recipient ({code})", smtp_code(code)
                ) from None
            except smtplib.SMTPResponseException as exc:
                self.close()
                raise DeliveryError(
                    f"the mail server answered {exc.smtp_code}", smtp_code(exc.smtp_code)
                ) from None
            except DeliveryError:
                raise
            except (OSError, smtplib.SMTPException) as exc:
                self.close()
                raise DeliveryError(
                    f"could not reach the mail server ({type(exc).__name__})", True
                ) from None
        raise AssertionError("unreachable")

    def _connect(self) -> smtplib.SMTP:
        if self.tls == "implicit":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self.context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        f"the mail server {self.host}:{self.port} does not offer STARTTLS and "
                        "leadbot never sends in plaintext: check email.host and email.port, or "
                        'set email.tls = "implicit" for port 465',
                        False,
                    )
                smtp.starttls(context=self.context)
                smtp.ehlo()
            if self.username:
                if self.tls == "none" and self.host not in LOOPBACK:
                    raise DeliveryError(
                        "refusing to send the SMTP password without TLS: set "
                        'email.tls to "starttls" or "implicit"',
                        False,
                    )
                smtp.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise DeliveryError(
                f"the mail server refused the login ({exc.smtp_code}): check "
                "SMTP_USERNAME and SMTP_PASSWORD",
                False,
            ) from None
        except ssl.SSLCertVerificationError:
            smtp.close()
            raise DeliveryError(
                f"the mail server's certificate for {self.host} is not trusted", False
            ) from None
        except BaseException:
            smtp.close()
            raise
        self.smtp = smtp
        return smtp

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                self.smtp.close()
            self.smtp = None
