"""The web dashboard (`rogerctl dashboard`): the cluster at a glance, and its operator buttons.

Why it exists: `rogerctl` answers one question per command; an operator
watching a backlog drain, or a queue to pause, wants the whole cluster on one
page that keeps itself current. It is a thin face on `Client`: everything it
shows or does is a Client call, so it can never disagree with rogerctl.

Kept small on purpose: aiohttp with the limits of `web.py` (shared with the
node's probes), one static page with plain JS (`static/index.html`) and no
build step. Who may use it: `access.py`.
"""

from .server import DashboardServer

__all__ = ["DashboardServer"]
