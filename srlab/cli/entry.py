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


def check_parsable(overrides: list[str]) -> None:
    """One line for a value Hydra's grammar cannot parse (a path with spaces or parentheses),
    saying how to quote it, instead of Hydra's multi-line OverrideParseException."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as e:
            key, _, value = override.partition("=")
            reason = str(e).splitlines()[0] if str(e) else "a syntax error"
            quoted = value.replace("'", "\\'")
            print(f"error: cannot parse {override!r} ({reason}): quote the value for Hydra, e.g. "
                  f"\"{key}='{quoted}'\" (the outer quotes are for your shell)", file=sys.stderr, flush=True)
            sys.exit(1)


def check_overrides(config_name: str, argv: list[str]) -> None:
    """One line for an override of a key the config does not have (`net.chanels=16`).

    Hydra refuses it before srlab's code runs, in a five-line message. Composing the config
    here first (a fraction of a second) lets srlab say it in one line, with the closest key
    that does exist. Runs with flags (-m sweeps, --cfg, ...) are left to Hydra.
    """
    import difflib
    import re

    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from srlab.config.compose import CONFIG_DIR

    if any(a.startswith("-") for a in argv):
        return
    overrides = [a for a in argv if "=" in a]
    check_parsable(overrides)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        try:
            compose(config_name, overrides=overrides)
            return
        except ConfigCompositionException as e:
            missing = re.search(r"Could not find '([^']+)/([^'/]+)'", str(e))
            if missing and (CONFIG_DIR / missing.group(1)).is_dir():
                group, name = missing.groups()
                choices = ", ".join(sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")))
                print(f"error: {group}={name}: no such option; use one of {choices}",
                      file=sys.stderr, flush=True)
                sys.exit(1)
            found = re.match(r"Could not override '([^']+)'", str(e))
            if not found:
                return  # another composition error: Hydra's own message
            key = found.group(1)
            if "/" in key:
                return  # a config group, not a key: Hydra's message
            bad = next(o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key)
            parent, _, leaf = key.rpartition(".")
            try:
                node = compose(config_name, overrides=[o for o in overrides if o != bad])
                for part in filter(None, parent.split(".")):
                    node = node[part]
                close = difflib.get_close_matches(leaf, [str(k) for k in node.keys()], n=1)
            except Exception:  # noqa: BLE001 - the hint is a bonus; the line below is the point
                close = []
    hint = f"; did you mean {parent + '.' if parent else ''}{close[0]}?" if close else ""
    message = f"error: {bad}: the config has no key {key}{hint} (+{bad} adds a new key)"
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def hydra_entry(config_name: str, main) -> None:
    """What a console script runs: the override check, then the @hydra.main function."""
    check_overrides(config_name, sys.argv[1:])
    main()
