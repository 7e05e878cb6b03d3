"""Logging for the long-running commands (`nightly`, `schedule`, `demo`): plain lines or one JSON
object per line (`--log-format json`, for journald and log shippers), always on stderr, and a
progress counter that redraws one line only when stderr is a terminal.

The pipeline (batch/run/nightly.py) reports events through a callback; `EventLogger` turns them into
log records with their fields attached, so the JSON output carries run_id, step, status, counts ...
as keys, not only as text.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any, TextIO

import click

__all__ = ["LOG_FORMATS", "EventLogger", "JsonFormatter", "Progress", "log_format_option", "setup_logging"]

LOG_FORMATS = ("text", "json")
LOGGER = "achbatch"
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "event", "msg", ...fields}: one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _RESERVED and k not in out and k != "event":
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, sort_keys=False)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")


def setup_logging(fmt: str = "text", stream: TextIO | None = None, level: int = logging.INFO) -> logging.Logger:
    """The `achbatch` logger, writing to `stream` (stderr) in `fmt`; idempotent."""
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    # APScheduler logs its own job events: same handler, warnings and up only (no per-job chatter).
    aps = logging.getLogger("apscheduler")
    for h in list(aps.handlers):
        aps.removeHandler(h)
    aps.addHandler(handler)
    aps.setLevel(logging.WARNING)
    aps.propagate = False
    return logger


def log_format_option(f):
    return click.option("--log-format", "log_format", type=click.Choice(LOG_FORMATS), default="text",
                        envvar="ACHBATCH_LOG_FORMAT", show_default=True,
                        help="Log lines on stderr: plain text, or one JSON object per line (journald, "
                             "log shippers). Also $ACHBATCH_LOG_FORMAT.")(f)


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items())


class Progress:
    """Progress of a long step: a redrawn counter on a terminal; otherwise a plain log line at
    most every `every_s` seconds (nothing for short steps)."""

    def __init__(self, logger: logging.Logger, stream: TextIO | None = None, every_s: float = 10.0):
        self.logger = logger
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self._last: float | None = None  # the first call always logs (monotonic time may be small)
        self._drawn = False

    def __call__(self, step: str, n: int, unit: str) -> None:
        if self.tty:
            self.stream.write(f"\r  {step}: {n:,} {unit}\x1b[K")
            self.stream.flush()
            self._drawn = True
            return
        now = time.monotonic()
        if self._last is None or now - self._last >= self.every_s:
            self._last = now
            self.logger.info("%s: %s %s so far", step, f"{n:,}", unit,
                             extra={"event": "progress", "step": step, "n": n, "unit": unit})

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


class EventLogger:
    """The pipeline's `emit(event, fields)` callback, as log records."""

    def __init__(self, logger: logging.Logger, progress: Progress | None = None):
        self.logger = logger
        self.progress = progress

    def __call__(self, event: str, fields: dict) -> None:
        if self.progress is not None:
            self.progress.clear()
        f = dict(fields)
        log = self.logger
        extra = {"event": event, **{k: v for k, v in f.items() if k not in _RESERVED}}
        if event == "run_started":
            what = "dry run" if f.get("dry_run") else f"run {f.get('run_id')}"
            where = f" on {f['host']} pid {f['pid']}" if f.get("host") else ""
            log.info("%s %s: %s started%s", f["kind"], f["business_date"], what, where, extra=extra)
        elif event == "step_started":
            log.info("step %s/%s %s: started", f["position"], f["of"], f["step"], extra=extra)
        elif event == "step_skipped":
            log.info("step %s: already done for %s by run %s: skipped", f["step"], f["business_date"],
                     f["done_by_run"], extra=extra)
        elif event == "step_finished":
            status = f["status"]
            level = logging.INFO if status == "done" and not f.get("problems") else logging.WARNING
            if status in ("failed", "unavailable"):
                level = logging.ERROR
            text = f"step {f['step']}: {status} in {f['duration_s']:.1f}s"
            if f.get("counts"):
                text += f" ({_counts(f['counts'])})"
            if f.get("note"):
                text += f"; {f['note']}"
            if f.get("error"):
                text += f"; error: {f['error']}"
            log.log(level, "%s", text, extra=extra)
            for p in f.get("problems") or []:
                log.warning("step %s: %s", f["step"], p, extra={"event": "data_problem", "step": f["step"],
                                                              "problem": p})
        elif event == "step_error":
            log.error("step %s failed with an unexpected error:\n%s", f["step"], f.get("traceback"), extra=extra)
        elif event == "run_finished":
            level = logging.INFO if f.get("exit_code") in (0, None) else logging.WARNING
            log.log(level, "%s", f.get("summary", ""), extra=extra)
        elif event == "warning":
            log.warning("%s", f.get("message"), extra=extra)
        elif event == "info":
            log.info("step %s: %s", f.get("step"), f.get("message"), extra=extra)
        else:
            log.info("%s %s", event, f, extra=extra)
