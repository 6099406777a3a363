"""Control UI themes: the built-in catalog the UI ships, and which one this gateway applies.

The reference's UI asks the gateway which themes exist and which is current (``themes.list`` on
its Settings > Appearance and General pages, ``themes.get`` for one theme). The eleven built-in
themes live in the UI bundle itself, so every one of them is truthfully available here. This
gateway keeps no appearance preference of its own: the current theme is the reference's default
(``claw``, following the system light/dark mode, gateway scope, no overrides), and choosing or
importing a theme (``themes.set``/``themes.import``) answers that it is not available here.
Names and descriptions are the reference's, as captured from its ``themes.list``.
"""
from __future__ import annotations

from typing import Any

from ..protocol.errors import invalid_request
from ..security.scopes import READ, WRITE
from .absent import not_available
from .registry import MethodSpec, RequestContext

# (id, name, description), in the reference's order.
BUILTIN_THEMES: tuple[tuple[str, str, str], ...] = (
    ("claw", "Claw", "Signature coral red and teal on charcoal or pale surfaces, with Instrument Sans throughout. A balanced everyday workspace."),
    ("knot", "Knot", "Crimson accents on true black or clean white, with Geist typography. Sharp, minimal, and high contrast."),
    ("dash", "Dash", "Toasted caramel on deep cocoa or warm cream, with DM Sans controls and Fraunces serif chat. Warm and bookish."),
    ("absolutely", "Absolutely", "Terracotta clay on warm graphite or soft cream, with Space Grotesk controls and Lora serif chat. Quiet editorial character."),
    ("tide", "Tide", "Steel cyan on cool slate or pale blue-gray, with IBM Plex Sans throughout. Calm, technical, and understated."),
    ("beacon", "Beacon", "High-visibility amber on black or white, bold focus rings, and Atkinson Hyperlegible typography. Designed for maximum readability."),
    ("phosphor", "Phosphor", "Luminous green on green-tinted black or pale green, with JetBrains Mono throughout. A classic green terminal atmosphere."),
    ("crt", "CRT", "White phosphor and amber on tube black, with a light counterpart, JetBrains Mono, and nearly square corners. A retro computer console."),
    ("manuscript", "Manuscript", "Lapis blue and gold on aged paper, with a dark reading-room variant and Lora serif throughout. A quiet illuminated manuscript."),
    ("rose", "Rosé", "Dried rose and gold on deep plum-gray or soft rose-tinted cream, with DM Sans. Gentle, muted, and warm."),
    ("miami", "Miami", "Hot magenta and cyan on violet-black or pale lavender, with Space Grotesk. Bright neon energy and a synthwave character."),
)
DEFAULT_THEME_ID = "claw"


def theme_summary(theme_id: str) -> dict[str, Any] | None:
    """One catalog entry as the reference lists it, or None for a theme that is not installed."""
    for candidate, name, description in BUILTIN_THEMES:
        if candidate == theme_id:
            return {"id": candidate, "name": name, "description": description, "source": "builtin", "modes": ["light", "dark"]}
    return None


def current_theme() -> dict[str, Any]:
    """The applied theme: the default, following the system mode (nothing here changes it)."""
    return {"id": DEFAULT_THEME_ID, "mode": "system", "scope": "gateway", "overrides": {}}


def themes_list(ctx: RequestContext) -> dict[str, Any]:
    return {
        "current": current_theme(),
        "theme": theme_summary(DEFAULT_THEME_ID),
        "themes": [theme_summary(theme_id) for theme_id, _, _ in BUILTIN_THEMES],
    }


def themes_get(ctx: RequestContext) -> dict[str, Any]:
    theme_id = (ctx.params or {}).get("id") or DEFAULT_THEME_ID
    theme = theme_summary(theme_id)
    if theme is None:
        # The reference's wording for a theme that is not installed.
        raise invalid_request(f"Theme {theme_id} is unavailable. List themes to choose an installed theme.")
    return {"current": current_theme(), "theme": theme}


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("themes.list", themes_list, scope=READ),
        MethodSpec("themes.get", themes_get, scope=READ),
        not_available("themes.set", "choosing the gateway's theme", scope=WRITE),
        not_available("themes.import", "importing themes", scope=WRITE),
    ]
