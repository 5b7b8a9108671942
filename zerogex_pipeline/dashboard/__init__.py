"""``zerogex dashboard``: the live GEX screen (one page per underlying) and the read-only levels API.

- :mod:`~zerogex_pipeline.dashboard.service`: the answers, as JSON-ready dicts (numbers from the store and the
  pure analytics);
- :mod:`~zerogex_pipeline.dashboard.app`: the FastAPI application (routes, errors, static files, docs);
- :mod:`~zerogex_pipeline.dashboard.events`: the server push (Server-Sent Events);
- :mod:`~zerogex_pipeline.dashboard.security`: loopback by default, the access token otherwise;
- ``static/``: the page (``index.html``, ``dashboard.js``, ``dashboard.css``); plotly.js comes from the
  ``plotly`` wheel.

All reads go through :mod:`zerogex_pipeline.storage.dashboard_queries`.
"""
