"""The console in a real browser: Debian's headless Chromium driven by Playwright for Python,
against the console served by uvicorn on loopback as `leadbot run` serves it, and once against
the real `leadbot run` process with its stand-ins (a lead from Autumna to a claim made in the
browser to the Slack message edited). Each journey a person makes — log in, see an unclaimed
lead, open it, resend a dead letter, follow a claim link from an email and claim — with
assertions on the DOM, and screenshots kept in tests/artifacts/web/ (or $LEADBOT_ARTEFACTS).

Without Chromium (or Playwright) these tests skip, saying why, on a developer's machine; in CI
(CI set) they fail: .ci/run installs Debian's chromium package.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import ROSE_MANAGER_EMAIL, World, published_by_key, wait_for
from webworld import PASSWORD, PERSONAL_WORDS, SECRET, Console, build, record

from bot.demo.standin import redate
from bot.models import Channel, Facts, Target
from bot.parse import parse_lead
from bot.render import Renderer
from bot.web import serve

ROOT = Path(__file__).resolve().parent
ARTIFACTS = Path(os.environ.get("LEADBOT_ARTEFACTS") or ROOT / "artifacts") / "web"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}  # an iPhone 12's viewport, in CSS pixels

pytestmark = pytest.mark.timeout(180)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(
            "chromium is not installed, and CI must drive the console in a real browser: "
            ".ci/run installs Debian's chromium package (apt-get install chromium)"
        )
    pytest.skip("chromium is not installed (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Playwright for Python is missing: it is in the test extra")
        pytest.skip("Playwright for Python is not installed (pip install playwright)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=path, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Console, str]]:
    console = build(tmp_path / "leadbot")
    serving = serve(console.app(), "127.0.0.1:0")
    try:
        yield console, f"http://127.0.0.1:{serving.port}"
    finally:
        serving()
        console.store.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Any, url: str) -> None:
    page.goto(f"{url}/")
    assert page.url.startswith(f"{url}/login?next=")  # the console asks first
    shot(page, "01-login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def test_log_in_and_see_the_unclaimed_leads_oldest_first(browser: Any, served: Any) -> None:
    console, url = served
    page = browser.new_page()
    log_in(page, url)
    rows = page.locator("tr.unclaimed-lead")
    assert rows.count() == 2
    assert console.keys["callback"] in rows.nth(0).inner_text()
    assert "2 h" in rows.nth(0).inner_text() and "urgent" in rows.nth(0).inner_text()
    assert console.keys["visit"] in rows.nth(1).inner_text()
    assert page.locator("#polling tr.good").inner_text().startswith("default")
    assert page.locator("#response-times svg.chart rect").count() >= 8
    text = page.inner_text("body")
    assert not [w for w in PERSONAL_WORDS if w in text]
    shot(page, "02-overview")
    page.close()


def test_the_overview_fits_a_phone(browser: Any, served: Any) -> None:
    console, url = served
    page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    log_in(page, url)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page scrolls sideways on a phone"
    assert page.locator("tr.unclaimed-lead").first.is_visible()
    resend = page.get_by_role("button", name="Resend").bounding_box()
    assert resend is not None and resend["x"] + resend["width"] <= PHONE["width"]
    shot(page, "03-overview-phone")
    page.goto(f"{url}/leads/{console.keys['callback']}")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    shot(page, "04-lead-phone")
    page.close()


def test_open_a_lead_and_read_its_timeline_and_messages(browser: Any, served: Any) -> None:
    console, url = served
    page = browser.new_page()
    log_in(page, url)
    page.locator("tr.unclaimed-lead a").first.click()
    page.wait_for_url(f"{url}/leads/{console.keys['callback']}")
    assert page.inner_text("h1").startswith("Call Back Request for Rose Lodge")
    steps = page.locator("ol.timeline li").all_inner_texts()
    assert any("Received by Autumna" in s for s in steps)
    assert any("Escalation step 1 went out" in s for s in steps)
    assert any("Failed for good" in s and "SMTP 550" in s for s in steps)
    messages = page.locator("#messages pre.message")
    assert messages.count() >= 3  # Slack, email and Teams, as they were rendered
    assert page.get_by_role("link", name="I'll call them").count() >= 1
    assert not [w for w in PERSONAL_WORDS if w in page.inner_text("body")]
    shot(page, "05-lead")
    page.close()


def test_resend_a_dead_letter(browser: Any, served: Any) -> None:
    console, url = served
    page = browser.new_page()
    log_in(page, url)
    dead = page.locator("#dead tr.dead-letter")
    assert dead.count() == 1 and "SMTP 550" in dead.inner_text()
    shot(page, "06-dead-letter")
    dead.get_by_role("button", name="Resend").click()
    page.wait_for_url(f"{url}/?resent=*")
    assert "queued again" in page.inner_text("#flash")
    assert page.locator("#dead tr.dead-letter").count() == 0
    assert console.delivery(console.keys["callback"], "email")[1] == "pending"
    shot(page, "07-resent")
    page.close()


class Anchors(HTMLParser):
    """Every link in an HTML document, with its text."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self.found.append((self._href, ""))

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            href, text = self.found[-1]
            self.found[-1] = (href, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None


def claim_link_in_the_email(console: Console, url: str) -> str:
    """The "I'll call them" link of the email leadbot sends for the call-back."""
    config = replace(console.config, web=replace(console.config.web, public_url=url))
    lead = parse_lead(record(4, "", 2001, 100000, 0), "default")
    target = Target(Channel.EMAIL, "amira.khan@rosecare.example", "home.manager_email", "full")
    payload = Renderer(config, "reaction", SECRET).render(lead, target, Facts(True)).payload
    return claim_link(email.message_from_bytes(payload.as_bytes(), policy=email.policy.default))


def claim_link(mail: Any) -> str:
    anchors = Anchors()
    anchors.feed(mail.get_body(("html",)).get_content())
    (href,) = [href for href, text in anchors.found if text == "I'll call them"]
    return str(href)


def test_follow_a_claim_link_from_an_email_and_claim_the_lead(browser: Any, served: Any) -> None:
    console, url = served
    link = claim_link_in_the_email(console, url)
    assert link.startswith(f"{url}/claim/")
    tom = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    sam = browser.new_context()
    mine, theirs = tom.new_page(), sam.new_page()
    mine.goto(link)
    theirs.goto(link)  # two people open the link; the first to claim has it
    assert mine.inner_text("h1") == "Call Back Request for Rose Lodge"
    assert not [w for w in PERSONAL_WORDS if w in mine.inner_text("body")]
    shot(mine, "08-claim-link-phone")
    mine.fill("#name", "Tom Reid")
    mine.click("#claim-button")
    mine.wait_for_selector("#claimed")
    assert mine.inner_text("#claimed") == "It's yours, Tom Reid: thank you."
    shot(mine, "09-claimed-phone")
    theirs.fill("#name", "Sam Patel")
    theirs.click("#claim-button")
    theirs.wait_for_selector("#taken")
    assert theirs.inner_text("#taken") == "Tom Reid has already claimed this lead"
    shot(theirs, "10-claimed-already")
    assert console.query(
        "SELECT by_name, via FROM claims WHERE lead = ?", console.keys["callback"]
    ) == [("Tom Reid", "web")]
    forged = link[:-3] + ("abc" if not link.endswith("abc") else "xyz")
    answer = theirs.goto(forged)
    assert answer is not None and answer.status == 403
    assert theirs.inner_text("#problem") == "This link does not work"
    shot(theirs, "11-forged-link")
    tom.close()
    sam.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_real_run_from_a_lead_to_a_claim_made_in_the_browser(
    browser: Any, world: World
) -> None:
    """`leadbot run` with its console: Autumna's call-back reaches the manager's inbox with a
    claim link; the manager claims it in Chromium; the run edits the Slack message to say so
    and the console no longer lists the lead as unclaimed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rules = world.config.read_text(encoding="utf-8").replace('interval = "1m"', 'interval = "1s"')
    world.config.write_text(rules + f'\n[web]\npublic_url = "{url}"\n', encoding="utf-8")
    world.extra_env |= {
        "LEADBOT_WEB_LISTEN": f"127.0.0.1:{port}",
        "LEADBOT_WEB_PASSWORD": PASSWORD,
        "LEADBOT_WEB_SECRET": SECRET,
    }
    world.autumna.add(redate([published_by_key()["4:2000"]], datetime.now(UTC))[0])
    with world.running("run") as process:
        mails = wait_for(
            lambda: [m for m in world.smtp.messages if ROSE_MANAGER_EMAIL in m.rcpt_tos],
            30,
            "the manager's email",
        )
        link = claim_link(mails[0].message)
        assert link.startswith(f"{url}/claim/")
        console = browser.new_page()
        log_in(console, url)
        assert "4:2000" in console.locator("tr.unclaimed-lead").first.inner_text()
        shot(console, "12-run-overview")
        manager = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True).new_page()
        manager.goto(link)
        manager.fill("#name", "Amira Khan")
        manager.click("#claim-button")
        manager.wait_for_selector("#claimed")
        shot(manager, "13-run-claimed-phone")
        edit = wait_for(lambda: world.slack.updates, 30, "the Slack message edited to say so")
        assert "Amira Khan" in json.dumps(edit[0].args)
        console.reload()
        assert console.locator("tr.unclaimed-lead").count() == 0
        console.goto(f"{url}/leads/4:2000")
        assert "by Amira Khan" in console.inner_text("#claim")
        shot(console, "14-run-lead-claimed")
        assert process.poll() is None
