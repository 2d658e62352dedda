"""The `smartmtl` command: switch presets and use trained models.

The pipeline itself runs through DVC (`dvc repro`); its stages are in stages/.
"""

from __future__ import annotations

from pathlib import Path

import typer

from smartmtl import presets
from smartmtl.config import ConfigError
from smartmtl.heads import SST_CLASSES
from smartmtl.predict import PredictError, predict_text

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)


@app.command()
def preset(name: str = typer.Argument(..., help=f"One of: {', '.join(presets.available())}."),
           output: Path = typer.Option(Path("params.yaml"), help="Where to write the parameters.")) -> None:
    """Write a named parameter set to params.yaml: smoke (minutes), laptop (the default), paper (GPU)."""
    try:
        presets.write(name, output)
    except ConfigError as error:
        typer.echo(f"preset: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{output}: preset '{name}'. Now `dvc repro` (or `dvc exp run`) runs at that scale.")


@app.command()
def predict(sentences: list[str] = typer.Argument(..., help="One sentence, or two for a pair."),
            model: str = typer.Option("ensemble", help="A trained model (folder in models/) or 'ensemble'.")) -> None:
    """Sentiment of each sentence; for a pair also paraphrase probability and similarity (0-5)."""
    try:
        result = predict_text(model, sentences)
    except PredictError as error:
        typer.echo(f"predict: {error}", err=True)
        raise typer.Exit(1) from None
    for sentence, label in zip(sentences, result.sentiment, strict=True):
        typer.echo(f"sentiment: {label} ({SST_CLASSES[label]})  <- {sentence}")
    if result.similarity is not None:
        typer.echo(f"paraphrase: {'yes' if result.paraphrase else 'no'} (probability {result.paraphrase_probability:.3f})")
        typer.echo(f"similarity: {result.similarity:.2f} / 5")


if __name__ == "__main__":
    app()
