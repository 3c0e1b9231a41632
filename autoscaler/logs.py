"""structlog setup: JSON lines in a cluster or when piped, readable lines on a terminal."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(*, level: str = "info", json_logs: bool | None = None) -> None:
    if json_logs is None:
        json_logs = "KUBERNETES_SERVICE_HOST" in os.environ or not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
