"""``pgdurable ui``: a web dashboard over the same SQL the CLI uses.

``app`` is the Flask application (pages, actions, errors), ``data`` what it
reads and the actions it calls, ``svg`` the graph picture, ``security``
sessions, sign-in and CSRF protection, ``server`` the address and TLS policy
and the production WSGI server (cheroot) that serves it.
"""

from __future__ import annotations

from pgdurable.ui.app import Settings, create_app

__all__ = ["Settings", "create_app"]
