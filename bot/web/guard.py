"""Who may do what in the console: the login (a session cookie signed like a claim link), CSRF
protection on every POST, and the headers every answer carries.

- The password is LEADBOT_WEB_PASSWORD. Without one the console opens only to this machine
  (a loopback Host, so a web page cannot reach it by DNS rebinding) and only while no
  `[web] public_url` says people reach it from elsewhere; `leadbot check` refuses a wider
  listener without one.
- CSRF: a random cookie, and in each form an HMAC of it under the server's secret (a signed
  double-submit token: a sibling site that can set cookies still cannot make a matching pair),
  plus the browser's own Origin and Sec-Fetch-Site headers when it sends them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TypeVar
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from .. import links

R = TypeVar("R", bound=Response)
SESSION = "leadbot_session"
CSRF = "leadbot_csrf"
SESSION_SECONDS = 12 * 3600  # a login lasts a working day
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
HEADERS = {
    # No script at all; styles are inline in the page; forms post only here.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # A claim link's token never leaves in a Referer; this site's own POSTs keep their Origin.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Guard:
    def __init__(self, password: str, secret: str, public_url: str) -> None:
        self.password = password
        # Without LEADBOT_WEB_SECRET a login lasts as long as this process.
        self.secret = secret or secrets.token_hex(32)
        # A new password ends every session made with the old one.
        self.session_key = _mac(self.secret, "session", password)
        self.public = urlsplit(public_url).netloc if public_url else ""

    # -- the login

    def open_without_login(self, request: Request) -> bool:
        return not self.password and not self.public and _host(request) in LOOPBACK_HOSTS

    def logged_in(self, request: Request, now: float) -> bool:
        if self.open_without_login(request):
            return True
        cookie = request.cookies.get(SESSION, "")
        if not self.password or not cookie:
            return False
        try:
            return links.verify(self.session_key, cookie, now) == "console"
        except links.BadLink:
            return False

    def right_password(self, given: str) -> bool:
        return bool(self.password) and hmac.compare_digest(given.encode(), self.password.encode())

    def log_in(self, response: Response, request: Request, now: float) -> None:
        token = links.sign(self.session_key, "console", now + SESSION_SECONDS)
        response.set_cookie(
            SESSION,
            token,
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def log_out(response: Response) -> None:
        response.delete_cookie(SESSION)

    # -- CSRF

    def form_token(self, request: Request) -> tuple[str, str]:
        """(the CSRF cookie, new or as the browser sent it; the token its forms carry)."""
        cookie = request.cookies.get(CSRF, "")
        if len(cookie) < 16:
            cookie = secrets.token_urlsafe(24)
        return cookie, _mac(self.secret, "csrf", cookie)

    @staticmethod
    def keep_form_cookie(response: Response, request: Request, cookie: str) -> None:
        if request.cookies.get(CSRF) != cookie:
            response.set_cookie(
                CSRF, cookie, httponly=True, samesite="lax", secure=request.url.scheme == "https"
            )

    def genuine_post(self, request: Request, token: str) -> bool:
        """A POST from one of our own pages: the form's token matches its cookie, and the
        browser, when it says, sent it from this site."""
        cookie = request.cookies.get(CSRF, "")
        if len(cookie) < 16 or not hmac.compare_digest(token, _mac(self.secret, "csrf", cookie)):
            return False
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        return urlsplit(origin).netloc in {request.headers.get("host", ""), self.public} - {""}


def secure(response: R) -> R:
    response.headers.update(HEADERS)
    return response


def _host(request: Request) -> str:
    host = request.headers.get("host", "")
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


def _mac(secret: str, purpose: str, value: str) -> str:
    message = f"{purpose}\0{value}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]
