"""The `smartmtl` command: switch presets and use trained models.

The pipeline itself runs through DVC (`dvc repro`); its stages are in stages/. Commands that
need torch import it themselves, so `smartmtl --help` and `smartmtl preset` answer at once.
"""

from __future__ import annotations

from pathlib import Path

import typer

from smartmtl import presets
from smartmtl.app.stage import PARAMS_OPTION, user_errors

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)


@app.command()
def preset(name: str = typer.Argument(..., help=f"One of: {', '.join(presets.available())}."),
           output: Path = typer.Option(Path("params.yaml"), help="Where to write the parameters.")) -> None:
    """Write a named parameter set to params.yaml: smoke (minutes), laptop (the default), paper (GPU)."""
    with user_errors("preset"):
        presets.write(name, output)
    typer.echo(f"{output}: preset '{name}'. Now `dvc repro` (or `dvc exp run`) runs at that scale.")


@app.command("smart-check")
def smart_check(params: Path = PARAMS_OPTION,
                batches: int = typer.Option(3, help="Real training batches per task."),
                batch_size: int = typer.Option(16, help="Rows per batch.")) -> None:
    """Show on real batches that SMART's perturbation, not dropout, makes its term (needs `dvc repro prepare`)."""
    from smartmtl.config import load_params
    from smartmtl.train.smartcheck import check, format_report

    with user_errors("smart-check"):
        settings = load_params(params)
        typer.echo(format_report(check(settings, batches, batch_size), settings))


@app.command("score-test")
def score_test(labelled: Path = typer.Argument(..., help="A folder laid out as data.raw_dir holding labelled test files."),
               predictions: Path = typer.Option(Path("predictions"), help="The folder of every run's predictions."),
               output: Path = typer.Option(Path("metrics/test_scores.csv"), help="Where to write the scores.")) -> None:
    """Score every run's and the ensemble's test predictions against labelled test files."""
    from smartmtl.results.testscore import score_test as score

    with user_errors("score-test"):
        frame = score(labelled, predictions)
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output, index=False)
    typer.echo(frame.to_markdown(index=False, floatfmt=".3f"))
    typer.echo(f"wrote {output}")


@app.command("train-group")
def train_group(row: str = typer.Argument("", help="A Table 2 row (a key of `variants` or `smart_variants`), "
                                                   "`table3` (every grid cell) or `figure3` (every SST lambda_s)."),
                seeds: str = typer.Option("", help="Comma-separated seeds: only the group's runs of these "
                                                   "(default: all its runs params.yaml plans)."),
                grid: str = typer.Option("", help="DROPOUT,LAMBDA_S: train that Table 3 cell instead of a row "
                                                  "(ROW is then ignored)."),
                params: Path = PARAMS_OPTION) -> None:
    """Train runs of one configuration (a row's seeds, or Table 3's or Figure 3's every run) as one
    fused model, on a GPU, writing each run's outputs as its finetune stage would (docs/fused.md);
    `dvc commit` then records them."""
    from smartmtl.config import load_params
    from smartmtl.fused.group import run_group, run_named_group
    from smartmtl.variants import grid_spec

    with user_errors("train-group"):
        settings = load_params(params)
        chosen = [int(seed) for seed in seeds.split(",")] if seeds else None
        if grid:
            dropout, lambda_s = (float(value) for value in grid.split(","))
            specs = [grid_spec(settings, dropout, lambda_s, seed) for seed in chosen or settings.sweep.descriptive_seeds]
            trained = list(zip(specs, run_group(specs, settings), strict=True))
        elif row:
            trained = run_named_group(settings, row, chosen)
        else:
            raise typer.BadParameter("name a Table 2 row, table3, figure3, or a grid cell with --grid DROPOUT,LAMBDA_S")
        for spec, record in trained:
            typer.echo(f"{spec.name}: {record['dev']}")


@app.command()
def groups(params: Path = PARAMS_OPTION) -> None:
    """The names of the fused groups that train every run of params.yaml once, one a line
    (for `smartmtl train-group`; `make groups` trains them side by side on one GPU)."""
    from smartmtl.config import load_params
    from smartmtl.fused.group import group_names

    with user_errors("groups"):
        typer.echo("\n".join(group_names(load_params(params))))


@app.command()
def predict(sentences: list[str] = typer.Argument(None, help="Sentences: each one's sentiment; two are also "
                                                               "compared as a pair (paraphrase, similarity)."),
            model: str = typer.Option("ensemble", help="A trained model (folder in models/) or 'ensemble'."),
            input_file: Path = typer.Option(None, "--input", help="A UTF-8 file: one sentence, or two separated by "
                                                                   "a tab, per line (blank lines are skipped)."),
            output: Path = typer.Option(None, help="Write every row's answers as CSV to this file."),
            device: str = typer.Option("cpu", help="cpu, cuda, mps, or auto (as train.device).")) -> None:
    """Sentiment with its class probabilities; for a pair the paraphrase probability and the
    similarity (0-5); and the model's dev scores, to judge how far to trust them."""
    import sys

    from tqdm import tqdm
    from transformers.utils import logging as transformers_logging

    from smartmtl.app import predict as prediction

    transformers_logging.disable_progress_bar()  # one bar per member's weights would bury the answers
    with user_errors("predict"):
        if input_file is not None and sentences:
            raise prediction.PredictError("give sentences or --input FILE, not both")
        if input_file is not None:
            numbered = prediction.read_rows(input_file)
        else:
            numbered = list(enumerate(prediction.sentence_rows(sentences), start=1))
        lines, rows = [number for number, _ in numbered], [row for _, row in numbered]
        predictor = prediction.load_predictor(model, rows, device=device)
        typer.echo(prediction.describe_model(predictor), err=output is None and input_file is not None)
        with tqdm(total=len(rows), unit="row", disable=input_file is None, file=sys.stderr) as bar:
            results = predictor.predict(rows, progress=bar.update)
    if output is not None:
        prediction.results_frame(lines, results).to_csv(output, index=False)
        typer.echo(f"wrote {len(results)} rows to {output}")
    elif input_file is not None:
        typer.echo(prediction.results_frame(lines, results).to_csv(index=False), nl=False)
    else:
        for result in results:
            typer.echo(prediction.describe(result))


@app.command()
def export(name: str = typer.Argument(..., help="A trained model (folder in models/) or 'ensemble' (each member)."),
           directory: Path = typer.Argument(..., help="A new or empty folder to write to."),
           push_to_hub: str = typer.Option(None, "--push-to-hub", metavar="REPO",
                                           help="Also upload the folder to this Hugging Face Hub repository "
                                                "(user/name; needs network and `hf auth login`).")) -> None:
    """Write a trained model as a Hugging Face folder (encoder, tokenizer, heads, model card)."""
    from smartmtl.app.export import export as export_model
    from smartmtl.app.export import push_to_hub as push

    with user_errors("export"):
        folders = export_model(name, directory)
        typer.echo(f"wrote {', '.join(str(folder) for folder in folders)} (model card: {directory / 'README.md'})")
        if push_to_hub:
            typer.echo(f"pushed to {push(directory, push_to_hub)}")


if __name__ == "__main__":
    app()
