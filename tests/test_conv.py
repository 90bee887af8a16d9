"""`dlrun conv`: the slides' 1-D convolution, output by output, against torch.nn.functional.conv1d; the filter
as a Toeplitz matrix and the data as a matrix (im2col) give the same outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlrun import conv
from dlrun.errors import ConfigError
from tests.conftest import dlrun


@pytest.mark.parametrize(
    ("n", "f", "padding", "stride"), [(5, 3, 0, 1), (5, 3, 1, 1), (9, 4, 2, 3), (7, 1, 0, 2), (3, 5, 1, 1)]
)
def test_outputs_match_torch(n, f, padding, stride):
    rng = np.random.default_rng(n * 100 + f)
    x, w = rng.normal(size=n).tolist(), rng.normal(size=f).tolist()
    outputs = conv.convolve(x, w, padding, stride)
    expected = F.conv1d(torch.tensor(x)[None, None], torch.tensor(w)[None, None], padding=padding, stride=stride)
    assert len(outputs) == (n - f + 2 * padding) // stride + 1 == expected.shape[-1]
    np.testing.assert_allclose([o.value for o in outputs], expected.flatten().double().numpy(), atol=1e-6)
    y = np.array([o.value for o in outputs])
    np.testing.assert_allclose(conv.toeplitz(w, n, padding, stride) @ conv.padded(x, padding), y, atol=1e-12)
    np.testing.assert_allclose(conv.im2col(x, f, padding, stride) @ np.array(w), y, atol=1e-12)


def test_the_command_prints_each_output_as_the_slide_does():
    result = dlrun("conv", "--signal", "1,2,3,4,5", "--kernel", "1,0,-1", "--padding", "1", "--matrices")
    assert result.returncode == 0, result.stderr
    assert "M = (5 - 3 + 2*1)/1 + 1 = 5 outputs:" in result.stdout
    assert "  y1 = 1*0 + 0*1 + (-1)*2 = -2" in result.stdout and "  y5 = 1*4 + 0*5 + (-1)*0 = 4" in result.stdout
    assert "T x_pad and X w give it: yes" in result.stdout


@pytest.mark.parametrize(
    ("signal", "kernel", "extra", "message"),
    [
        ("1,2", "1,2,3,4", [], "longer than the padded signal"),
        ("1,two", "1", [], "--signal 1,two: give comma-separated numbers"),
        ("1,2,3", "1", ["--stride", "0"], "stride >= 1"),
        ("1,nan", "1", [], "finite numbers"),
    ],
)
def test_bad_input_is_one_line(signal, kernel, extra, message):
    result = dlrun("conv", "--signal", signal, "--kernel", kernel, *extra)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
    with pytest.raises(ConfigError):
        conv.convolve(
            conv.numbers(signal, "--signal"), conv.numbers(kernel, "--kernel"), 0, int(extra[1]) if extra else 1
        )
