"""``attngan serve``: the HTTP API (FastAPI) and the web pages.

Needs the ``serve`` extra (``pip install "attngan[serve]"``). Build the application with
:func:`create_app`; :class:`ServerSettings` holds its limits.
"""

from .app import AppState, ServerSettings, create_app

__all__ = ["AppState", "ServerSettings", "create_app"]
