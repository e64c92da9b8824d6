"""What every entry point does around its work: one clear line for user errors.

Hydra wraps exceptions raised while instantiating (`InstantiationException`), DataLoader
workers re-raise with the worker's traceback inside the message; both would bury the one
sentence the user needs. `user_errors` digs the `SrlabError` (or a missing `???` value) out,
prints `error: <message>` and exits 1 — no traceback, no hang.
The same line (or, for a bug, the traceback) also goes into the run's log file (Hydra's
`<job>.log`): the run directory then says why it stopped, and `srlab-compare` can tell a
failed run from an unfinished one.
"""
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf.errors import MissingMandatoryValue

from srlab.errors import SrlabError


def _find_user_error(exc: BaseException | None) -> BaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (SrlabError, MissingMandatoryValue)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def user_error_message(exc: BaseException) -> str:
    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", None) or "a required value"
        return f"missing value for {key}: set it on the command line, e.g. {key}=<value>"
    message = str(exc).strip()
    if "Traceback" in message:  # re-raised from a DataLoader worker: keep the original line
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = last.split("SrlabError: ", 1)[-1]
    return message.splitlines()[0] if message else type(exc).__name__


def log_to_files(message: str, exc: BaseException | None = None) -> None:
    """Write to the log files only (Hydra's file handler): the console has its own line."""
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord("srlab", logging.ERROR, __file__, 0, message, None, exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        user_exc = _find_user_error(exc)
        if user_exc is None:
            log_to_files(f"stopped by {type(exc).__name__}", exc)  # Hydra prints it to the console
            raise
        message = f"error: {user_error_message(user_exc)}"
        log_to_files(message)
        print(message, file=sys.stderr, flush=True)
        sys.exit(1)
