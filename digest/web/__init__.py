"""The public web app: subscribe, confirm, preferences, unsubscribe, and RSS/Atom feeds.

app = create_app(settings)   # a Starlette app; `digest serve` runs it with uvicorn
"""

from digest.web.app import create_app

__all__ = ["create_app"]
