"""What every stage does around its work: logging, loading parameters, clean errors.

A stage that fails on bad input prints one message naming what is wrong and exits 1;
a traceback is for bugs, not for a typo in params.yaml.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from smartmtl.config import ConfigError, Params, load_params

log = logging.getLogger("smartmtl")


class UserError(Exception):
    """Base for errors caused by input or parameters, not by the code."""


def user_errors() -> tuple[type[BaseException], ...]:
    from smartmtl.backbone import BackboneError
    from smartmtl.data import DataError
    from smartmtl.variants import VariantError

    return (UserError, ConfigError, DataError, BackboneError, VariantError, FileNotFoundError)


@contextlib.contextmanager
def stage_context(stage: str, params_path: Path) -> Iterator[Params]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        yield load_params(params_path)
    except user_errors() as error:
        print(f"{stage}: {error}", file=sys.stderr)
        raise typer.Exit(code=1) from None
