"""Log output for the command-line tools: text for people, JSON lines for collectors.

Records about a job carry `job_id`, `job_class`, `partition` and `queue`
(passed as `extra` by the runtime); every record of a node carries `node`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

JOB_FIELDS = ("job_id", "job_class", "partition", "queue")


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("node", *JOB_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class NodeName(logging.Filter):
    """Stamps every record with the node's name."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


def setup_logging(level: str, fmt: str = "text", node: str | None = None) -> None:
    """Logs on stderr, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if node is not None:
        handler.addFilter(NodeName(node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiormq logs every broken connection at length; our own messages say it once.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(logging.CRITICAL)
