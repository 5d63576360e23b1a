"""Ctrl-C during a trial: Optuna marks the trial FAIL and logs it with the full traceback of the
KeyboardInterrupt (about 45 lines) before re-raising it. `drop_interrupt_tracebacks` filters
exactly those two log records out; any other failed trial is still logged with its traceback.
"""

from __future__ import annotations

import logging

_LOGGER = "optuna.study._optimize"


class _InterruptFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.interrupted: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info
        message = record.getMessage()
        if exc and exc[0] is not None and issubclass(exc[0], KeyboardInterrupt):
            self.interrupted.add(message.split(" failed", 1)[0])  # "Trial 12"
            return False
        # Optuna's second record of the same trial: "Trial 12 failed with value None."
        return not (" failed with value " in message and message.split(" failed", 1)[0] in self.interrupted)


def drop_interrupt_tracebacks() -> None:
    """Install the filter once on the logger Optuna's optimisation loop writes to."""
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(f, _InterruptFilter) for f in logger.filters):
        logger.addFilter(_InterruptFilter())
