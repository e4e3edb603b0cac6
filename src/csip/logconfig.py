"""How csip writes its log: plain text (the default) or one JSON object per line.

`log_format = "json"` (`csip serve --log-format json`) is for log shippers: every line is one
object with `time` (UTC, ISO 8601, milliseconds), `level`, `logger` and `message`; access
lines (`access_log`, logger csip.access) add `face`, `method`, `route` (the route's pattern),
`path`, `status`, `duration_ms` and `peer`, a refusal's reason as `detail`, and `lane`
("fast") for a poll the 2030.5 fast lane answered; a worker's
lines carry `worker`; a traceback, where one is logged, is the `exception` field of the same
object. json.dumps escapes every control character, so no value can break a line in two.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from csip.config import Settings

__all__ = ["JsonFormatter", "configure_logging"]

#: Record attributes copied into a JSON line when present (set through `extra=`).
FIELDS = (
    "face",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "peer",
    "detail",
    "lane",
    "worker",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        attributes = record.__dict__
        for name in FIELDS:
            value = attributes.get(name)
            if value is not None:
                line[name] = value
        if self.worker is not None:
            line["worker"] = self.worker
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure_logging(settings: Settings, worker: int | None = None) -> None:
    """The root logger of a `csip serve` process (or worker `worker`), to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        where = f" [worker {worker} %(process)d]" if worker is not None else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s")
        )
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
