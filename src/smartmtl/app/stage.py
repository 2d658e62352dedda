"""What every stage does around its work: logging, loading parameters, clean errors.

A stage that fails on bad input prints one message naming what is wrong and exits 1;
a traceback is for bugs, not for a typo in params.yaml.

Garbage collection: importing torch and transformers builds hundreds of thousands of objects
that live as long as the process, and the collector walks them over and over while they are
imported and again in the interpreter's collections at exit (docs/speed.md measures what that
cost). So each stage script switches the collector off before its imports,
and `stage_context` freezes what they built (out of every later collection), switches it back
on for the stage's own work, and freezes again at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import typer

from smartmtl.config import Params, load_params
from smartmtl.errors import UserError

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="The parameter file.")


@contextlib.contextmanager
def user_errors(command: str) -> Iterator[None]:
    """Report a UserError or a missing file as ``command: message`` on stderr and exit 1."""
    try:
        yield
    except (UserError, FileNotFoundError) as error:
        typer.echo(f"{command}: {error}", err=True)
        raise typer.Exit(code=1) from None


@contextlib.contextmanager
def stage_context(stage: str, params_path: Path) -> Iterator[Params]:
    if not gc.isenabled():  # a stage script's imports are done
        gc.freeze()
        gc.enable()
    atexit.register(gc.freeze)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    with user_errors(stage):
        yield load_params(params_path)


def stage_app(stage: str, work: Callable[[Params], object]) -> typer.Typer:
    """The command line of a stage whose only option is ``--params``: it loads them and runs
    ``work`` on them within :func:`stage_context`; ``work``'s docstring is the command's help."""
    app = typer.Typer(add_completion=False)

    @app.command(help=work.__doc__)
    def main(params: Path = PARAMS_OPTION) -> None:
        with stage_context(stage, params) as settings:
            work(settings)

    return app
