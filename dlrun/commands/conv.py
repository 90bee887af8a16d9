"""`dlrun conv`: a 1-D convolution computed output by output, as the slides do (the library is dlrun/conv.py)."""

from __future__ import annotations

import typer

from dlrun.commands.base import app, handle_errors


def _num(v: float) -> str:
    return f"{v:g}" if v >= 0 else f"({v:g})"


@app.command(
    epilog=(
        "[bold]Examples[/]\n\n"
        "  dlrun conv --signal 1,2,3,4,5 --kernel 1,0,-1\n\n"
        "  dlrun conv --signal 1,2,3,4,5 --kernel 1,0,-1 --padding 1 --matrices"
    )
)
@handle_errors
def conv(
    signal: str = typer.Option(..., "--signal", help="The input x, comma-separated numbers."),
    kernel: str = typer.Option(..., "--kernel", help="The kernel (filter) w, comma-separated numbers."),
    padding: int = typer.Option(0, "--padding", help="P zeros on each side of the signal."),
    stride: int = typer.Option(1, "--stride", help="S: the window moves S steps between outputs."),
    matrices: bool = typer.Option(False, "--matrices", help="Also the same outputs as T x_pad and as X w (im2col)."),
):
    """Convolve a signal with a kernel: every output as its window times the kernel, M = (N - F + 2P)/S + 1."""
    from dlrun import conv as lib

    x, w = lib.numbers(signal, "--signal"), lib.numbers(kernel, "--kernel")
    outputs = lib.convolve(x, w, padding, stride)
    n, f = len(x), len(w)
    print(f"x_pad = [{', '.join(f'{v:g}' for v in lib.padded(x, padding))}]  (N = {n}, P = {padding})")
    print(f"w = [{', '.join(f'{v:g}' for v in w)}]  (F = {f}, S = {stride})")
    print(f"M = ({n} - {f} + 2*{padding})/{stride} + 1 = {len(outputs)} outputs:")
    for o in outputs:
        terms = " + ".join(f"{_num(wk)}*{_num(xk)}" for wk, xk in zip(w, o.window, strict=True))
        print(f"  y{o.i} = {terms} = {o.value:g}")
    if matrices:
        import numpy as np

        t, cols = lib.toeplitz(w, n, padding, stride), lib.im2col(x, f, padding, stride)
        y = np.array([o.value for o in outputs])
        print("filter as a Toeplitz matrix, y = T x_pad:")
        for row in t:
            print("  [" + " ".join(f"{v:>5g}" for v in row) + "]")
        print("data as a matrix (im2col), y = X w:")
        for row in cols:
            print("  [" + " ".join(f"{v:>5g}" for v in row) + "]")
        same = np.allclose(t @ lib.padded(x, padding), y) and np.allclose(cols @ np.asarray(w), y)
        print(f"y = [{', '.join(f'{v:g}' for v in y)}]; T x_pad and X w give it: {'yes' if same else 'NO'}")
