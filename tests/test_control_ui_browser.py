"""The reference's own Control UI, in Debian's Chromium (headless, over CDP), against our gateway.

Issue 14, point 4: the gateway (a real ``twistd -n openclaw`` child with ``--control-ui-root``
and a config file, as a user runs it) serves the UI from an installed ``openclaw`` package; the page
loads, connects without a manual approval, shows no error, sends a composer message and shows
the (fake upstream) model's reply, and lists the main session on its sessions page. A screenshot
of the chat turn is written (to ``$OPENCLAW_SCREENSHOT_DIR`` when set, else the test's temp dir).

Skipped, with the reason, only when Chromium or the reference package is not installed; CI
installs both (``.ci/install-clients``), so there it runs.
"""
from __future__ import annotations

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from .support.cdp import Browser
from .support.gateway import TOKEN
from .support.reference import find_clients
from .support.twistd import TwistdGateway, free_port
from .support.upstream import FakeUpstream

CLIENTS = find_clients()

# Text of the page including every shadow root (the UI is Lit components).
DEEP_TEXT = """(() => {
  const parts = [document.body ? document.body.innerText : ''];
  const walk = (root) => { for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) { parts.push(el.shadowRoot.textContent || ''); walk(el.shadowRoot); } } };
  walk(document);
  return parts.join('\\n');
})()"""

# The composer: present and empty once the chat page has loaded.
FIND_COMPOSER = """(() => {
  const walk = (root) => { for (const el of root.querySelectorAll('*')) {
    if (el.tagName === 'TEXTAREA') return el;
    if (el.shadowRoot) { const found = walk(el.shadowRoot); if (found) return found; } } return null; };
  const box = walk(document);
  if (!box || box.disabled) return false;
  box.focus();
  return document.activeElement === box || (box.getRootNode() && box.getRootNode().activeElement === box);
})()"""


def contains(text: str) -> str:
    return f"({DEEP_TEXT}).includes({json.dumps(text)})"


class ControlUiBrowserTests(TestCase):
    timeout = 120

    def setUp(self):
        missing = CLIENTS.missing_browser()
        if missing:
            raise self.skipTest(missing)

    @inlineCallbacks
    def start_gateway(self, upstream: FakeUpstream) -> str:
        state = self.mktemp()
        os.makedirs(state)
        port = free_port()
        config = {"gateway": {"port": port, "auth": {"mode": "token", "token": TOKEN}}, **upstream.config()}
        path = os.path.join(state, "openclaw.json")
        with open(path, "w") as handle:
            json.dump(config, handle)
        gateway = TwistdGateway(self, ["--config", path, "--state-dir", state, "--control-ui-root", str(CLIENTS.control_ui)])
        yield gateway.wait_for_port(port)
        return f"http://127.0.0.1:{port}"

    @inlineCallbacks
    def test_chat_turn_in_the_reference_ui(self):
        upstream = FakeUpstream().start(self)
        base = yield self.start_gateway(upstream)
        browser = Browser(reactor, str(CLIENTS.chromium))
        yield browser.start()
        self.addCleanup(browser.stop)
        yield browser.navigate(f"{base}/#token={TOKEN}")

        # Connected without approval: hello-ok, and the composer is there.
        yield browser.wait_for(FIND_COMPOSER, timeout_s=30)
        hello = [p for d, _, p in browser.frames if d == "received" and isinstance(p, dict) and (p.get("payload") or {}).get("type") == "hello-ok"]
        self.assertEqual(len(hello), 1, browser.console)
        self.assertEqual(hello[0]["payload"]["auth"]["role"], "operator")

        yield browser.send("Input.insertText", {"text": "Say hello"})
        yield browser.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"})
        yield browser.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13})
        yield browser.wait_for(contains("Hello there!"), timeout_s=30)
        path = os.path.join(os.environ.get("OPENCLAW_SCREENSHOT_DIR") or self.mktemp(), "control-ui-chat-turn.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        yield browser.screenshot(path)
        self.assertGreater(os.path.getsize(path), 10_000)

        # What the page asked for, every answer ok: no unknown method, no schema error.
        sent = browser.requests()
        self.assertIn("chat.send", [frame["method"] for frame in sent])
        answers = browser.responses()
        failed = [(frame["method"], answers[frame["id"]]["error"]) for frame in sent if frame["id"] in answers and not answers[frame["id"]]["ok"]]
        self.assertEqual(failed, [])
        self.assertEqual(upstream.requests[-1]["body"]["messages"][-1]["content"], "Say hello")
        text = yield browser.evaluate(DEEP_TEXT)
        for bad in ("unknown method", "invalid ", "NOT_PAIRED", "pairing required"):
            self.assertNotIn(bad, text)

        # The sessions page lists the main session.
        yield browser.navigate(f"{base}/sessions#token={TOKEN}")
        yield browser.wait_for(contains("agent:main:main"), timeout_s=30)
