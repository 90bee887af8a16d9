"""`dlrun viz NAME RUN_DIR`: pictures of a trained run (the library is dlrun/viz/).

Every picture is a PNG (default RUN_DIR/viz/NAME.png, or --out) and the same image in the run's
TensorBoard under viz/NAME.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dlrun.commands.base import PASS_THROUGH, app, handle_errors, overrides_argument, print_table

viz_app = typer.Typer(
    name="viz",
    help="Look inside a trained run: activation maximization, filters, saliency, adversarial examples, loss "
    "landscapes, decision boundaries, linear regions, learning curves, confusion matrices, calibration, 1-D "
    "fits, activation histograms. Each picture is written as a PNG (default RUN_DIR/viz/NAME.png) and logged "
    "to the run's TensorBoard under viz/NAME.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun viz actmax runs/mlp-digits/2026-01-01_12-00-00\n\n"
        "  dlrun viz adversarial runs/mlp-digits/2026-01-01_12-00-00 --attack pgd --eps 0.1\n\n"
        "  dlrun viz landscape runs/resnet20/2026-01-01_12-00-00 --compare runs/plain20/2026-01-01_13-00-00\n\n"
        "  dlrun viz curves runs/mlp-digits      [dim]# every run below the folder[/]"
    ),
)
app.add_typer(viz_app, name="viz")

RUN_HELP = "A run directory, e.g. runs/mlp-digits/2026-01-01_12-00-00 (see `dlrun runs`)."
WEIGHTS_HELP = "last: checkpoints/last.pt (what test/* was measured with); best: best.pt; init: the untrained model."
OUT_HELP = "Where to write the PNG. Default: RUN_DIR/viz/NAME.png."


def _run_arg():
    return typer.Argument(..., help=RUN_HELP, show_default=False)


def _weights_opt():
    return typer.Option("last", "--weights", help=WEIGHTS_HELP)


def _out_opt():
    return typer.Option(None, "--out", "-o", help=OUT_HELP, show_default=False)


def _check_writable(out: Path | None, run_dirs) -> None:
    """Before the work: the PNG's folder, and each run directory (its TensorBoard gets the image too)."""
    from dlrun.files import check_writable, check_writable_file

    if out is not None:
        check_writable_file(out, f"--out {out}")
    for run_dir in run_dirs:
        check_writable(run_dir, str(run_dir), "the picture is logged to the run's TensorBoard: make the run writable")


def _save(fig, run, name: str, out: Path | None) -> None:
    """Write the PNG, log it to the run's TensorBoard, and say where."""
    from dlrun.viz.picture import save

    path = out or run.run_dir / "viz" / f"{name}.png"
    picture = save(fig, path, f"viz/{name}", [run.run_dir], run.step)
    _report(picture, [run.run_dir], run.step)


def _report(picture, log_dirs, step: int) -> None:
    print(f"wrote {picture.path} ({picture.width}x{picture.height} px, {picture.n_bytes / 1024:.0f} KB)")
    for log_dir in log_dirs:
        print(f"tensorboard: image {picture.tag} at step {step} in {log_dir}")


@viz_app.command(epilog="[bold]Examples[/]\n\n  dlrun viz layers runs/lenet5-digits/2026-01-01_12-00-00")
@handle_errors
def layers(run_dir: Path = _run_arg(), weights: str = _weights_opt()):
    """List the layer names (targets for actmax and activations) with their output shapes."""
    from dlrun.viz.layers import layer_table
    from dlrun.viz.load import load_run

    run = load_run(run_dir, weights)
    table = Table(show_header=True, header_style="bold")
    for col in ("layer", "type", "output shape", "parameters"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for row in layer_table(run.model, run.task.input_shape):
        table.add_row(row["layer"], row["type"], str(row["output"]), f"{row['params']:,}" if row["params"] else "")
    print_table(table)
    if run.task.is_classification:
        print(f"targets: class (every class), class:C (C in 0..{run.task.n_classes - 1}), LAYER or LAYER:UNIT")


@viz_app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun viz actmax RUN                           [dim]# every class, 3 random starts each[/]\n\n"
        "  dlrun viz actmax RUN --target class:7 --starts 8\n\n"
        "  dlrun viz actmax RUN --target conv1            [dim]# each channel of conv1 (see dlrun viz layers)[/]\n\n"
        "  dlrun viz actmax RUN --target fc1:3 --jitter 1 --blur 0.5 --tv 0.05"
    )
)
@handle_errors
def actmax(
    run_dir: Path = _run_arg(),
    target: str = typer.Option(
        "class", "--target", help="class (every class), class:C, LAYER (each unit/channel) or LAYER:UNIT."
    ),
    starts: int = typer.Option(3, "--starts", min=1, help="Random starts per target (the result depends on them)."),
    steps: int = typer.Option(200, "--steps", min=1, help="Adam steps of gradient ascent on the input."),
    lr: float = typer.Option(0.05, "--lr", min=0.0, help="Adam step size, as a fraction of the valid input range."),
    l2: float = typer.Option(0.01, "--l2", min=0.0, help="L2 decay: maximize S(x) - l2 ||x||^2."),
    jitter: int = typer.Option(0, "--jitter", min=0, help="Shift the input by up to this many pixels each step."),
    blur: float = typer.Option(0.0, "--blur", min=0.0, help="Gaussian blur of this sigma (pixels) every 4 steps."),
    tv: float = typer.Option(0.0, "--tv", min=0.0, help="Total-variation penalty weight."),
    limit: int = typer.Option(16, "--limit", min=1, help="At most this many units or channels for a LAYER target."),
    score: str = typer.Option(
        "logit", "--score", help="Class targets: logit (the score S_c) or logprob (log softmax, pushes others down)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random starts and jitter."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """Activation maximization: the input that maximizes a class score, a unit or a channel."""
    from dlrun.errors import ConfigError
    from dlrun.viz import actmax as lib
    from dlrun.viz.load import load_run

    if score not in ("logit", "logprob"):
        raise ConfigError(f"--score {score}: choose from: logit, logprob")
    run = load_run(run_dir, weights)
    _check_writable(out, [run.run_dir])
    parsed = lib.parse_target(target, run.task.class_names)
    result = lib.maximize(
        run.model, run.task.input_shape, run.task.value_range, parsed, run.task.n_classes,
        starts=starts, steps=steps, lr=lr, l2=l2, jitter=jitter, blur=blur, tv=tv, limit=limit,
        log_prob=score == "logprob", seed=seed,
    )  # fmt: skip
    if parsed.layer == "class":
        p = [result.probs[t, :, c] for t, c in enumerate(result.indices)]
        low, mean = min(v.min() for v in p), sum(v.mean() for v in p) / len(p)
        print(f"probability of the target class: min {low:.3f}, mean {mean:.3f}")
    _save(
        lib.plot_actmax(result, run.task), run, "actmax" if parsed.layer == "class" else f"actmax-{parsed.layer}", out
    )


@viz_app.command(epilog="[bold]Examples[/]\n\n  dlrun viz filters runs/lenet5-digits/2026-01-01_12-00-00")
@handle_errors
def filters(run_dir: Path = _run_arg(), weights: str = _weights_opt(), out: Path | None = _out_opt()):
    """First-layer convolution kernels as images (2-D) or curves (1-D)."""
    from dlrun.errors import ConfigError
    from dlrun.viz import filters as lib
    from dlrun.viz.load import load_run

    run = load_run(run_dir, weights)
    _check_writable(out, [run.run_dir])
    try:
        name, w = lib.kernels(run.model)
    except ConfigError as e:
        raise ConfigError(f"{run.run_dir}: model={run.cfg.model.name}: {e}") from None
    _save(lib.plot_filters(w, name), run, "filters", out)


@viz_app.command(epilog="[bold]Examples[/]\n\n  dlrun viz saliency RUN --examples 6")
@handle_errors
def saliency(
    run_dir: Path = _run_arg(),
    examples: int = typer.Option(8, "--examples", "-n", min=1, help="The first N examples of the split."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """Saliency maps |dS_c/dx| of the predicted class beside the inputs."""
    from dlrun.viz import saliency as lib

    run = _classifier(run_dir, weights, out, "saliency")
    data = _split(run, split)
    result = lib.saliency(run.model, data.x[:examples], data.y[:examples])
    _save(lib.plot_saliency(result, run.task), run, "saliency", out)


@viz_app.command(epilog="[bold]Examples[/]\n\n  dlrun viz reconstructions RUN_AUTOENCODER --examples 8")
@handle_errors
def reconstructions(
    run_dir: Path = _run_arg(),
    examples: int = typer.Option(8, "--examples", "-n", min=1, max=64, help="The first N examples of the split."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """An autoencoder's inputs and their reconstructions (a run with data.targets=inputs)."""
    from dlrun.viz import reconstructions as lib
    from dlrun.viz.load import load_run

    run = load_run(run_dir, weights)
    _check_writable(out, [run.run_dir])
    data = _split(run, split)
    x, x_hat, err = lib.reconstruct(run.model, data.x[:examples])
    print(f"{len(x)} {split} examples: reconstruction mse {err.mean():.4g} (from {err.min():.3g} to {err.max():.3g})")
    code = getattr(run.cfg.model, "code", 0)
    _save(lib.plot_reconstructions(x, x_hat, err, run.task.value_range, code), run, "reconstructions", out)


@viz_app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun viz adversarial RUN --attack fgsm --eps 0.25     [dim]# accuracy for eps in 0..0.25[/]\n\n"
        "  dlrun viz adversarial RUN --attack pgd --eps 0.1 --steps 40\n\n"
        "  dlrun viz adversarial RUN --attack onepixel"
    )
)
@handle_errors
def adversarial(
    run_dir: Path = _run_arg(),
    attack: str = typer.Option("fgsm", "--attack", help="fgsm, pgd (with FGSM for reference) or onepixel."),
    eps: float | None = typer.Option(
        None,
        "--eps",
        min=0.0,
        help="Largest L-inf perturbation, in the model's input units; the curve covers 0..eps. "
        "Default: a quarter of the valid input range (0.25 for inputs in 0..1).",
        show_default=False,
    ),
    points: int = typer.Option(11, "--points", min=2, max=1001, help="eps values on the curve (at most 1,001)."),
    steps: int = typer.Option(40, "--steps", min=1, help="PGD steps (step size 2.5 eps / steps)."),
    restarts: int = typer.Option(2, "--restarts", min=1, help="PGD starts: x itself, then random points of the ball."),
    examples: int = typer.Option(4, "--examples", "-n", min=1, help="Examples drawn: clean, perturbed, difference."),
    attempts: int = typer.Option(20, "--attempts", min=1, help="onepixel: correctly classified examples attacked."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    seed: int = typer.Option(0, "--seed", help="Seed of PGD's random starts and the differential evolution."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """Adversarial examples: accuracy against eps, and clean / perturbed / difference examples."""
    from dlrun.errors import ConfigError, suggest
    from dlrun.viz import adversarial as lib
    from dlrun.viz.load import load_run, require_classification

    if attack not in lib.ATTACKS:
        raise ConfigError(f"--attack {attack}: unknown;{suggest(attack, lib.ATTACKS)} choose from: fgsm, pgd, onepixel")
    run = load_run(run_dir, weights)
    _check_writable(out, [run.run_dir])
    require_classification(run, "adversarial")
    lo, hi = run.task.value_range
    eps = (hi - lo) / 4 if eps is None else eps
    data = _split(run, split)
    result = lib.run_attack(
        attack, run.model, data.x, data.y, run.task.value_range, eps, points=points, n_examples=examples,
        n_onepixel=attempts, seed=seed, steps=steps, restarts=restarts,
    )  # fmt: skip
    if attack == "onepixel":
        print(f"one pixel: fooled {1 - result.attacked_acc:.1%} of {result.n_attacked} correctly classified examples")
    else:
        # the attack asked for last, on the summary line; another (FGSM beside PGD) before it, for comparison
        for name in sorted(result.curves, key=lambda n: n == attack):
            acc, note = result.curves[name], "" if name == attack else " (for comparison)"
            print(
                f"{name}{note}: accuracy {acc[0]:.4f} at eps 0 -> {acc[-1]:.4f} at eps {eps:g} "
                f"(inputs in {lo:.3g}..{hi:.3g})"
            )
    _save(lib.plot_adversarial(result, run.task), run, f"adversarial-{attack}", out)


@viz_app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun viz landscape RUN                        [dim]# 2-D, 51 x 51 points over -1..1[/]\n\n"
        "  dlrun viz landscape RUN --dims 1 --points 101\n\n"
        "  dlrun viz landscape RUN_RESNET --compare RUN_PLAIN --points 21"
    )
)
@handle_errors
def landscape(
    run_dir: Path = _run_arg(),
    dims: int = typer.Option(2, "--dims", min=1, max=2, help="1: a curve along d; 2: a contour plot over (d, e)."),
    points: int = typer.Option(51, "--points", min=3, max=1001, help="Grid points per axis (at most 1,001)."),
    span: float = typer.Option(1.0, "--range", min=0.0, help="The grid covers -range..range along each direction."),
    compare: Path | None = typer.Option(
        None, "--compare", help="A second run, drawn beside the first (same seed of directions).", show_default=False
    ),
    examples: int = typer.Option(0, "--examples", min=0, help="Train examples the loss is averaged over; 0 = all."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random directions."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """Loss landscape along filter-normalized random directions (Li et al. 2018); values saved as .npz."""
    import time

    from dlrun.viz import landscape as lib
    from dlrun.viz.load import load_run

    runs = [load_run(run_dir, weights)] + ([load_run(compare, weights)] if compare else [])
    _check_writable(out, [runs[0].run_dir])
    results = []
    for run in runs:
        started = time.perf_counter()
        train = run.data.train
        n = examples or len(train)
        result = lib.loss_landscape(
            run.model, train.x[:n], train.y[:n], run.setup.loss_fn, run.task, dims=dims, points=points, span=span,
            seed=seed,
        )  # fmt: skip
        result.label = "/".join(run.run_dir.resolve().parts[-2:])
        center = result.loss[(points // 2,) * dims]
        print(
            f"{result.label}: loss at the trained point {center:.4g}, grid min {result.loss.min():.4g}, "
            f"max {result.loss.max():.4g} ({points**dims} points in {time.perf_counter() - started:.1f} s)"
        )
        results.append(result)
    name = f"landscape-{dims}d"
    path = out or runs[0].run_dir / "viz" / f"{name}.png"
    lib.save_npz(path.with_suffix(".npz"), results)
    print(f"wrote {path.with_suffix('.npz')}")
    _save(lib.plot_landscape(results), runs[0], name, path)


@viz_app.command(epilog="[bold]Examples[/]\n\n  dlrun viz boundary runs/xor_hidden/2026-01-01_12-00-00")
@handle_errors
def boundary(
    run_dir: Path = _run_arg(),
    split: str = typer.Option("train", "--split", help="The points drawn: train, val or test."),
    resolution: int = typer.Option(200, "--resolution", min=10, max=2000, help="Grid points per axis (at most 2,000)."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """Decision regions of a classifier on 2-D inputs, with the data points."""
    from dlrun.viz import boundary as lib

    run = _classifier(run_dir, weights, out, "boundary")
    lib.check_2d(run.task.input_shape, run.cfg.data.name)
    data = _split(run, split)
    grid = lib.decision_grid(run.model, data.x, data.y, resolution)
    title = f"model={run.cfg.model.name} on data={run.cfg.data.name}: {split} accuracy {grid.accuracy:.3f}"
    _save(lib.plot_boundary(grid, run.task, title), run, "boundary", out)


@viz_app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun viz curves runs/mlp-digits/2026-01-01_12-00-00 runs/mlp-digits/2026-01-01_12-05-00\n\n"
        "  dlrun viz curves runs/lr-sweep --out lr.png    [dim]# every run below a folder[/]\n\n"
        "  dlrun viz curves runs/mlp-digits/2026-01-01_12-00-00   [dim]# a group: mean and 95% band over its seeds[/]"
    )
)
@handle_errors
def curves(
    runs: list[Path] = typer.Argument(..., help="Run directories, or folders of runs.", show_default=False),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Where to write the PNG. Default: RUN/viz/curves.png for one run or folder of runs; for several, "
        "viz/curves.png in the folder that holds them all (the first one's if that is the current folder).",
        show_default=False,
    ),
    band: str = typer.Option(
        "ci",
        help="Runs of one condition (the same config but the seed) are drawn as their mean with a band: ci "
        "(the 95% interval of the mean), std (± 1 standard deviation), or none (every run on its own).",
    ),
):
    """Training and validation curves of several runs in one figure (from their metrics.jsonl); repeats
    of a condition as their mean with a band."""
    from dlrun.bands import BANDS, conditions
    from dlrun.errors import ConfigError
    from dlrun.viz import curves as lib
    from dlrun.viz.picture import save

    if band not in BANDS:
        raise ConfigError(f"--band {band}: unknown; choose from: {', '.join(BANDS)}")
    run_dirs = lib.expand_runs(list(runs))
    out = out or lib.default_out(list(runs))
    _check_writable(out, run_dirs)
    if band == "none":
        groups = [(label, [r]) for label, r in zip(lib.run_labels(run_dirs), run_dirs, strict=True)]
    else:
        groups = conditions(run_dirs)
    series = [(label, [lib.read_metrics(r) for r in dirs]) for label, dirs in groups]
    picture = save(lib.plot_curves(series, band), out, "viz/curves", run_dirs, 0)
    _report(picture, run_dirs, 0)


@viz_app.command(
    epilog=(
        "[bold]Examples[/]\n\n  dlrun viz regions runs/deep/2026-01-01_12-00-00 --compare runs/wide/2026-01-01_12-05-00"
    )
)
@handle_errors
def regions(
    run_dir: Path = _run_arg(),
    compare: Path | None = typer.Option(None, "--compare", help="A second run drawn beside it (deeper against wider)."),
    resolution: int = typer.Option(400, "--resolution", min=10, max=2000, help="Grid points per axis (at most 2,000)."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """Count and draw the linear regions of a ReLU network over its 2-D input (one on/off pattern each)."""
    import torch

    from dlrun.errors import ConfigError
    from dlrun.viz import regions as lib
    from dlrun.viz.load import load_run

    runs = [load_run(run_dir, weights)] + ([load_run(compare, weights)] if compare is not None else [])
    _check_writable(out, [r.run_dir for r in runs])
    for r in runs:
        if tuple(r.task.input_shape) != (2,):
            raise ConfigError(
                f"{r.run_dir}: viz regions draws a 2-D input; data={r.cfg.data.name} has {r.task.input_shape}"
            )
    x = torch.cat([r.data.train.x for r in runs]).cpu().numpy()
    lo, hi = x.min(0), x.max(0)
    pad = (hi - lo) * 0.25
    panels = []
    for r in runs:
        found = lib.regions(r.model, lo - pad, hi + pad, resolution)
        hidden = getattr(r.cfg.model, "hidden", "")
        print(f"{r.run_dir}: {found.count} linear regions on a {resolution}x{resolution} grid, {found.units} ReLUs")
        panels.append((f"{r.run_dir.name}: hidden={hidden}", found))
    _save(lib.plot_regions(panels), runs[0], "regions", out)


@viz_app.command(epilog="[bold]Examples[/]\n\n  dlrun viz fit runs/universal_approximation/2026-01-01_12-00-00")
@handle_errors
def fit(run_dir: Path = _run_arg(), weights: str = _weights_opt(), out: Path | None = _out_opt()):
    """A regression model's prediction over its one input, with the train and test points (1-D regression)."""
    from dlrun.train import summary as summaries
    from dlrun.viz import fit as lib
    from dlrun.viz.load import load_run

    run = load_run(run_dir, weights)
    _check_writable(out, [run.run_dir])
    lib.require_1d_regression(run)
    title = f"model={run.cfg.model.name} hidden={getattr(run.cfg.model, 'hidden', '')} on data={run.cfg.data.name}"
    mse = (summaries.read(run.run_dir) or {}).get("metrics", {}).get("test/mse")
    if mse is not None and weights == "last":
        title += f" (test mse {mse:.4g})"
    _save(lib.plot_fit(run, title), run, "fit", out)


@viz_app.command(epilog="[bold]Examples[/]\n\n  dlrun viz calibration runs/mlp-digits/2026-01-01_12-00-00 --bins 10")
@handle_errors
def calibration(
    run_dir: Path = _run_arg(),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    bins: int = typer.Option(15, "--bins", min=2, max=100, help="Equal-width confidence bins on [0, 1]."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """Reliability diagram and expected calibration error: accuracy against confidence (classification only)."""
    from dlrun.viz import calibration as lib

    run = _classifier(run_dir, weights, out, "calibration")
    data = _split(run, split)
    r = lib.of_model(run.model, data.x, data.y, bins)
    print(f"expected calibration error ({split} split, {r.n} examples, {bins} bins): {r.ece:.4f}")
    _save(lib.plot_reliability(r, f"Reliability diagram, {split} split"), run, "calibration", out)


@viz_app.command(epilog="[bold]Examples[/]\n\n  dlrun viz confusion runs/mlp-digits/2026-01-01_12-00-00")
@handle_errors
def confusion(
    run_dir: Path = _run_arg(),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """Confusion matrix on the test split (classification only)."""
    from dlrun.viz import confusion as lib

    run = _classifier(run_dir, weights, out, "confusion")
    data = _split(run, split)
    matrix = lib.confusion_matrix(run.model, data.x, data.y, run.task.n_classes)
    accuracy = matrix.trace() / max(matrix.sum(), 1)
    title = f"Confusion matrix, {split} split ({matrix.sum()} examples, accuracy {accuracy:.3f})"
    _save(lib.plot_confusion(matrix, run.task, title), run, "confusion", out)


@viz_app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun viz activations RUN --weights init       [dim]# at initialization: vanishing gradients?[/]\n\n"
        "  dlrun viz activations RUN --layers fc1,act1,out"
    )
)
@handle_errors
def activations(
    run_dir: Path = _run_arg(),
    batch: int = typer.Option(256, "--batch", min=2, help="The first N train examples form the batch."),
    layer_names: str | None = typer.Option(
        None,
        "--layers",
        help="Comma-separated layer names (see dlrun viz layers). Default: every activation function.",
        show_default=False,
    ),
    mode: str = typer.Option("train", "--mode", help="train (dropout on, batch statistics) or eval."),
    weights: str = _weights_opt(),
    out: Path | None = _out_opt(),
):
    """Per-layer histograms of activations and of the loss gradient w.r.t. them, for one batch."""
    from dlrun.errors import ConfigError
    from dlrun.viz import activations as lib
    from dlrun.viz.load import load_run

    if mode not in ("train", "eval"):
        raise ConfigError(f"--mode {mode}: choose from: train, eval")
    run = load_run(run_dir, weights)
    _check_writable(out, [run.run_dir])
    train = run.data.train
    run.model.train(mode == "train")
    names = [n.strip() for n in layer_names.split(",") if n.strip()] if layer_names else None
    stats = lib.activation_stats(run.model, train.x[:batch], train.y[:batch], run.setup.loss_fn, names)
    run.model.eval()
    for s in stats:
        print(f"{s.name:>16}  activation std {s.act_std:.3g}  gradient std {s.grad_std:.3g}")
    title = f"Activations and gradients of one batch of {min(batch, len(train))} ({weights} weights, {mode} mode)"
    _save(lib.plot_activations(stats, title), run, "activations", out)


@viz_app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun viz trajectory --expr 'x1**2 + 2*x2**2' --at -5,-2 --optim sgd,momentum,adam --lr 0.1\n\n"
        "  dlrun viz trajectory --expr '(1 - x1)**2 + 100*(x2 - x1**2)**2' --at -1,1 --optim adam,rmsprop --lr 0.01 "
        "--steps 300"
    )
)
@handle_errors
def trajectory(
    expr: str = typer.Option(..., "--expr", help="f(x1, x2): a formula of two variables (as gradcheck --expr)."),
    at: str = typer.Option(..., "--at", help="The start: two comma-separated values."),
    optim: str = typer.Option("sgd,momentum,adam", "--optim", help="Comma-separated optimizers (dlrun list optim)."),
    lr: float = typer.Option(0.1, "--lr", help="optim.lr of every optimizer."),
    steps: int = typer.Option(50, "--steps", min=1, max=100_000, help="Steps of each optimizer."),
    out: Path = typer.Option(Path("trajectory.png"), "--out", "-o", help="The PNG to write."),
):
    """Optimizers' paths on the contours of a 2-variable surface (d2l's show_trace_2d), with dlrun's optimizers."""
    from dlrun.errors import ConfigError
    from dlrun.gradcheck.expr import parse_point
    from dlrun.viz import trajectory as lib
    from dlrun.viz.picture import save

    _check_writable(out, [])
    if not (lr > 0 and lr < float("inf")):
        raise ConfigError(f"--lr {lr}: give a step size > 0")
    _, names = lib.surface(expr)
    start = parse_point(at, names, expr)
    optims = [o.strip() for o in optim.split(",") if o.strip()]
    paths = lib.descend(expr, start, optims, lr, steps)
    for t in paths:
        end = ", ".join(f"{v:.4g}" for v in t.points[-1])
        print(f"{t.optim}: f = {t.values[0]:.4g} at the start -> {t.values[-1]:.4g} at ({end}) after "
              f"{len(t.points) - 1} steps{'; ' + t.stopped if t.stopped else ''}")  # fmt: skip
    picture = save(lib.plot_trajectories(expr, paths, lr), out, "viz/trajectory")
    _report(picture, [], 0)


@viz_app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun viz functions\n\n"
        "  dlrun viz functions --names sigmoid,tanh --range -6,6     [dim]# saturation: g'(z) -> 0[/]"
    )
)
@handle_errors
def functions(
    names: str = typer.Option("sigmoid,tanh,relu,leaky_relu,elu,gelu", "--names", help="Comma-separated activations."),
    span: str = typer.Option("-4,4", "--range", help="The z axis: LO,HI."),
    out: Path = typer.Option(Path("functions.png"), "--out", "-o", help="The PNG to write."),
):
    """Activation functions g(z) and their derivatives g'(z) (by autograd), side by side."""
    from dlrun.errors import ConfigError
    from dlrun.viz import functions as lib
    from dlrun.viz.picture import save

    _check_writable(out, [])
    try:
        lo, hi = (float(v) for v in span.split(","))
    except ValueError:
        raise ConfigError(f"--range {span}: give LO,HI, e.g. --range -4,4") from None
    if not (lo < hi and abs(lo) < 1e6 and abs(hi) < 1e6):
        raise ConfigError(f"--range {span}: give finite LO < HI (within 1e6)")
    data = lib.curves([n.strip() for n in names.split(",") if n.strip()], lo, hi)
    for name, (z, _, d) in data.items():
        at0 = d[abs(z).argmin()]
        print(f"{name}: g'(z) from {d.min():.4g} to {d.max():.4g} on [{lo:g}, {hi:g}]; g'(0) = {at0:.4g}")
    picture = save(lib.plot_functions(data), out, "viz/functions")
    _report(picture, [], 0)


@viz_app.command(
    context_settings=PASS_THROUGH,
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun viz graph --expr 'x1*x2 + sin(x1)' --at 1,2\n\n"
        "  dlrun viz graph model=mlp 'model.hidden=[4]' data=iris     [dim]# the loss of one example[/]"
    ),
)
@handle_errors
def graph(
    overrides: list[str] | None = overrides_argument(),
    expr: str | None = typer.Option(None, "--expr", help="A formula (as gradcheck --expr) instead of a model."),
    at: str | None = typer.Option(None, "--at", help="With --expr: one value per variable.", show_default=False),
    out: Path = typer.Option(Path("graph.png"), "--out", "-o", help="The PNG to write."),
):
    """The computation graph autograd records, from the output back to the leaves (variables or parameters)."""
    from dlrun.errors import ConfigError
    from dlrun.viz import graph as lib
    from dlrun.viz.picture import save

    _check_writable(out, [])
    if expr is not None:
        if overrides:
            raise ConfigError("--expr draws a formula's graph: drop the overrides")
        from dlrun.gradcheck.expr import parse, parse_point, variables

        g, value = lib.expr_graph(expr, parse_point(at, variables(parse(expr)), expr))
        title = f"f = {expr} = {value:.6g}"
    else:
        if at is not None:
            raise ConfigError("--at goes with --expr (the point to evaluate the formula at)")
        from dlrun.config import compose

        cfg = compose(list(overrides or []))
        g, value = lib.model_graph(cfg)
        title = f"model={cfg.model.name} on data={cfg.data.name}: loss of one example = {value:.4g}"
    ops = sorted({label for n, label in g.labels.items() if any(b == n for _, b in g.edges)})
    print(
        f"{len(g.labels)} nodes, {len(g.edges)} edges, {max(g.depth.values()) + 1} levels; operations: {', '.join(ops)}"
    )
    picture = save(lib.plot_graph(g, title), out, "viz/graph")
    _report(picture, [], 0)


def _classifier(run_dir: Path, weights: str, out: Path | None, what: str):
    """The run of a classifier, loaded, with its folder (and --out's) checked writable before the work."""
    from dlrun.viz.load import load_run, require_classification

    run = load_run(run_dir, weights)
    _check_writable(out, [run.run_dir])
    require_classification(run, what)
    return run


def _split(run, name: str):
    from dlrun.errors import ConfigError

    if name not in ("train", "val", "test"):
        raise ConfigError(f"--split {name}: choose from: train, val, test")
    return run.data.split(name)
