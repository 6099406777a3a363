"""The node command policy: platform allowlists, the config, the approved surface (openclaw.nodes.policy).

The 21 commands below are what the reference node host (openclaw 2026.9.6, Linux) declares; the
reference gateway put 13 of them in the pairing request and refused file.stat with "not in the
allowlist for platform linux" (captured side by side, see docs/nodes.md).
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.nodes import policy

NODE_HOST_COMMANDS = [
    "browser.proxy", "browser.proxy.upload.v1", "desktop.stream", "dir.fetch", "dir.list", "file.create", "file.fetch",
    "file.stat", "file.write", "fs.listDir", "mcp.tools.call.v1", "ollama.chat", "ollama.models", "system.execApprovals.get",
    "system.execApprovals.set", "system.run", "system.run.prepare", "system.which", "terminal.upload", "workspace.memory",
    "workspace.skills",
]
REFERENCE_REQUEST = [
    "browser.proxy", "browser.proxy.upload.v1", "desktop.stream", "fs.listDir", "mcp.tools.call.v1", "ollama.chat", "ollama.models",
    "system.execApprovals.get", "system.execApprovals.set", "system.run", "system.run.prepare", "system.which", "terminal.upload",
]
LINUX_HOST = {"platform": "linux", "deviceFamily": "Linux", "caps": ["browser", "file", "local-inference", "mcp", "system"], "commands": NODE_HOST_COMMANDS}


def config(allow=(), deny=()):
    return {"gateway": {"nodes": {"commands": {"allow": list(allow), "deny": list(deny)}}}}


class PlatformTests(SynchronousTestCase):
    def test_platform_must_agree_with_the_device_family(self):
        self.assertEqual(policy.platform_id("linux", "Linux"), "linux")
        self.assertEqual(policy.platform_id("linux", ""), "unknown")
        self.assertEqual(policy.platform_id("ios", ""), "ios")
        self.assertEqual(policy.platform_id("", "iPhone"), "ios")
        self.assertEqual(policy.platform_id("macOS 15.1", "Mac"), "unknown")
        self.assertEqual(policy.platform_id("macos", "Mac"), "macos")
        self.assertEqual(policy.platform_id(None, None), "unknown")


class PairingRequestTests(SynchronousTestCase):
    def test_reference_node_host_asks_for_13_of_21(self):
        self.assertEqual(policy.requestable({}, LINUX_HOST), REFERENCE_REQUEST)

    def test_allow_adds_and_deny_removes(self):
        requested = policy.requestable(config(allow=["file.stat"], deny=["system.run"]), LINUX_HOST)
        self.assertIn("file.stat", requested)
        self.assertNotIn("system.run", requested)

    def test_dangerous_commands_may_be_asked_for_but_deny_does_not_hide_them(self):
        node = {"platform": "ios", "deviceFamily": "iPhone", "commands": ["camera.snap", "camera.list", "sms.send"]}
        self.assertEqual(policy.requestable({}, node), ["camera.list"])
        self.assertEqual(policy.requestable(config(allow=["camera.snap"], deny=["camera.snap"]), node), ["camera.list", "camera.snap"])


class RuntimeTests(SynchronousTestCase):
    def test_unapproved_surface_has_no_effective_commands(self):
        self.assertEqual(policy.effective({}, LINUX_HOST, None), [])
        # A declared desktop host command waiting for `nodes approve` says so (not "not in the
        # allowlist for platform linux", which is false: it is on the list, only not approved yet).
        reason, message = policy.refusal({}, LINUX_HOST, None, "system.which")
        self.assertEqual(reason, "node did not declare commands")
        self.assertIn("pending approval", message)
        self.assertNotIn("allowlist", message)
        # A declared command outside the platform's list is still refused as not allowlisted.
        self.assertEqual(policy.refusal({}, dict(LINUX_HOST, commands=["file.stat"]), None, "file.stat")[0], "command not allowlisted")
        # A platform default that is declared but not yet approved: pending approval.
        node = dict(LINUX_HOST, commands=["system.notify"])
        reason, message = policy.refusal({}, node, None, "system.notify")
        self.assertEqual(reason, "node did not declare commands")
        self.assertIn("pending approval", message)

    def test_approved_surface(self):
        approved = REFERENCE_REQUEST
        self.assertEqual(policy.effective({}, LINUX_HOST, approved), REFERENCE_REQUEST)
        self.assertIsNone(policy.refusal({}, LINUX_HOST, approved, "system.which"))
        self.assertIsNone(policy.refusal({}, LINUX_HOST, approved, "system.run"))
        self.assertEqual(
            policy.refusal({}, LINUX_HOST, approved, "file.stat"),
            ("command not allowlisted", 'node command not allowed: "file.stat" is not in the allowlist for platform "linux"'),
        )

    def test_deny_wins_at_runtime_too(self):
        reason, message = policy.refusal(config(deny=["system.which"]), LINUX_HOST, REFERENCE_REQUEST, "system.which")
        self.assertEqual(message, 'node command not allowed: "system.which" is blocked by gateway.nodes.commands.deny')

    def test_desktop_host_commands_need_the_approved_surface(self):
        """system.run is not a Linux default: approved commands bring it in, nothing else does."""
        approved = ["system.notify"]
        node = dict(LINUX_HOST, commands=["system.notify", "system.run"])
        self.assertEqual(policy.refusal({}, node, approved, "system.run")[0], "command not allowlisted")
        self.assertIsNone(policy.refusal({}, node, approved, "system.notify"))

    def test_talk_commands_follow_the_talk_capability(self):
        node = {"platform": "linux", "deviceFamily": "Linux", "caps": ["talk"], "commands": ["talk.ptt.start"]}
        self.assertEqual(policy.requestable({}, node), ["talk.ptt.start"])
        self.assertIsNone(policy.refusal({}, node, ["talk.ptt.start"], "talk.ptt.start"))
        no_talk = dict(node, caps=[], commands=["system.notify"])
        self.assertEqual(
            policy.refusal({}, no_talk, ["system.notify"], "talk.ptt.start")[1],
            'node command not allowed: "talk.ptt.start" requires a trusted Talk-capable node',
        )

    def test_undeclared(self):
        node = dict(LINUX_HOST, commands=["system.run"])
        self.assertEqual(
            policy.refusal({}, node, ["system.run"], "system.notify"),
            ("command not declared by node", 'node command not allowed: the node (platform: linux) does not support "system.notify"'),
        )
