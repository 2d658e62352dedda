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

from smartmtl.config import Params, load_params
from smartmtl.errors import UserError

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="The parameter file.")


@contextlib.contextmanager
def stage_context(stage: str, params_path: Path) -> Iterator[Params]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        yield load_params(params_path)
    except (UserError, FileNotFoundError) as error:
        print(f"{stage}: {error}", file=sys.stderr)
        raise typer.Exit(code=1) from None
