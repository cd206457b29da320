"""The public web app: subscribe, confirm, preferences, unsubscribe, and RSS/Atom feeds.

app = create_app(settings)                     # a Starlette app
serve(settings, host="127.0.0.1", port=8000)  # what `digest serve` runs: uvicorn
"""

from digest.web.app import create_app, serve

__all__ = ["create_app", "serve"]
