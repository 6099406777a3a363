"""Serving the reference's built Control UI (a user-installed ``dist/control-ui``) on the gateway port.

We never ship the UI's files: ``gateway.controlUi.root`` (or ``--control-ui-root`` /
``OPENCLAW_CONTROL_UI_ROOT``) points at the copy the user installed with npm. The modules:

- :mod:`.settings`: which root, which base path, enabled or not (and why a root is unusable);
- :mod:`.files`: turning a URL path into a file inside the root (never outside it) and reading it
  off the reactor thread, with a bounded cache;
- :mod:`.encoding`: ``br``/``gzip`` from ``Accept-Encoding`` (precompressed siblings, or on the fly);
- :mod:`.index`: ``index.html`` rewritten for the base path, and its CSP script hashes;
- :mod:`.headers`: the security headers the reference sends on UI responses;
- :mod:`.handler`: the request handler the HTTP app falls back to.
"""
