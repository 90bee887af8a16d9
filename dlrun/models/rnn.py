"""Recurrent networks: h_t = F(x_t, h_{t-1}; W) with F a tanh RNN, an LSTM, a GRU or a small MLP, then a
linear head.

How an example becomes a sequence x_1 ... x_T (the model takes a batch (B, *input_shape)):

- a signal (C, L) (input_kind "signal") is read one step per position: T = L steps of C features
  (MNIST-1D: 40 steps of 1 feature);
- an image (C, H, W) (input_kind "image") is read row by row, top to bottom: T = H steps of C*W
  features, step t holding row t of every channel, channel by channel (digits: 8 steps of 8 features);
- a 1-D shape (L,) is read as T = L steps of 1 feature.

The readout turns the outputs y_1 ... y_T (each hidden_size * directions wide) into one vector:

- last: the output at the last step, y_T; bidirectional: the forward direction's y_T next to the
  backward direction's y_1, i.e. the final hidden states of both directions (h_n of the top layer);
- mean: the mean of y_t over the T steps;
- flatten: every step's output, concatenated (T * hidden_size * directions values).

A Linear layer (`out`) maps that vector to out_features (logits or values).
"""

from __future__ import annotations

import torch
from torch import nn

from dlrun.options import RNNConfig
from dlrun.options.model import fit_reason


class MLPRecurrence(nn.Module):
    """h_t = F([x_t, h_{t-1}]) with F a small MLP (the lectures: "F could be any neural network"): Linear to
    each width of `cell_hidden` with tanh, then Linear to hidden_size with tanh. Batch-first like nn.RNN: stacked
    layers (dropout between them) and both directions; returns (outputs (B, T, D*H), h_n (layers*D, B, H))."""

    def __init__(self, features: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 bidirectional: bool = False, dropout: float = 0.0, cell_hidden: tuple[int, ...] = (64,)):  # fmt: skip
        super().__init__()
        self.hidden_size, self.directions, self.dropout = hidden_size, 2 if bidirectional else 1, dropout
        cells = []
        for layer in range(num_layers):
            width = features if layer == 0 else hidden_size * self.directions
            for _ in range(self.directions):
                parts: list[nn.Module] = []
                for w in (*cell_hidden, hidden_size):
                    parts += [nn.Linear(width + (hidden_size if not parts else 0), w), nn.Tanh()]
                    width = w
                cells.append(nn.Sequential(*parts))
                width = features if layer == 0 else hidden_size * self.directions
        self.cells = nn.ModuleList(cells)

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """lengths (B,): each sequence's own steps; h stays put (and outputs are 0) past them."""
        finals = []
        steps = seq.shape[1]
        live = (torch.arange(steps, device=seq.device)[None, :] < lengths[:, None]) if lengths is not None else None
        for layer in range(len(self.cells) // self.directions):
            outs = []
            for d in range(self.directions):
                cell = self.cells[layer * self.directions + d]
                h = seq.new_zeros(seq.shape[0], self.hidden_size)
                order = range(steps) if d == 0 else reversed(range(steps))
                ys = {}
                for t in order:
                    new = cell(torch.cat([seq[:, t], h], dim=1))
                    h = new if live is None else torch.where(live[:, t, None], new, h)
                    ys[t] = h if live is None else h * live[:, t, None]
                outs.append(torch.stack([ys[t] for t in range(steps)], dim=1))
                finals.append(h)
            seq = torch.cat(outs, dim=2)
            if self.dropout and self.training and layer < len(self.cells) // self.directions - 1:
                seq = nn.functional.dropout(seq, self.dropout)
        return seq, torch.stack(finals)


CELLS: dict[str, type[nn.Module]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "mlp": MLPRecurrence}


def sequence_shape(input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(T, F): the steps and features per step the model reads from one example of `input_shape`."""
    if len(input_shape) == 1:  # (L,): L steps of 1 feature
        return input_shape[0], 1
    if len(input_shape) == 2:  # (C, L) signal: L steps of C features
        c, length = input_shape
        return length, c
    if len(input_shape) == 3:  # (C, H, W) image: H rows of C*W features
        c, h, w = input_shape
        return h, c * w
    raise ValueError(f"model=rnn reads inputs of shape (L,), (C, L) or (C, H, W), not {tuple(input_shape)}")


def to_sequence(x: torch.Tensor) -> torch.Tensor:
    """(B, *input_shape) -> (B, T, F) in the reading order of the module docstring."""
    if x.dim() == 2:  # (B, L)
        return x.unsqueeze(-1)  # (B, L, 1)
    if x.dim() == 3:  # (B, C, L)
        return x.transpose(1, 2)  # (B, L, C)
    if x.dim() == 4:  # (B, C, H, W)
        b, c, h, w = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # (B, H, C, W) -> (B, H, C*W)
    raise ValueError(f"model=rnn reads batches of shape (B, L), (B, C, L) or (B, C, H, W), not {tuple(x.shape)}")


class RNN(nn.Module):
    """x -> to_sequence -> rnn (stacked, optionally bidirectional) -> readout -> out.

    `self.rnn` is the torch recurrent module (nn.RNN, nn.LSTM or nn.GRU, batch_first), `self.out`
    the linear head.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        out_features: int,
        cell: str = "gru",
        hidden_size: int = 64,
        layers: int = 1,
        bidirectional: bool = False,
        readout: str = "last",
        dropout: float = 0.0,
        cell_hidden: tuple[int, ...] = (64,),
        masked: bool = False,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell '{cell}'; choose from: {', '.join(CELLS)}")
        self.steps, self.features = sequence_shape(tuple(input_shape))  # T, F
        self.masked = masked  # the last feature of each step is 1 on the example's steps, 0 on padding
        if masked:
            self.features -= 1
            if readout == "flatten":
                raise ValueError("readout=flatten needs sequences of one length; use last or mean")
        self.hidden_size = hidden_size
        self.directions = 2 if bidirectional else 1
        self.readout = readout
        self.rnn = CELLS[cell](
            self.features,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,  # torch applies it between stacked layers only
            **({"cell_hidden": tuple(cell_hidden)} if cell == "mlp" else {}),
        )
        width = hidden_size * self.directions  # one step's output
        if readout == "flatten":
            width *= self.steps
        elif readout not in ("last", "mean"):
            raise ValueError(f"unknown readout '{readout}'; choose from: last, mean, flatten")
        self.out = nn.Linear(width, out_features)  # logits (or values); the loss applies sigmoid/softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = to_sequence(x)  # (B, T, F)
        if self.masked:
            return self._forward_masked(seq)
        y, _ = self.rnn(seq)  # (B, T, D*H), D = directions; forward outputs first, then backward
        if self.readout == "last":
            if self.directions == 1:
                z = y[:, -1]  # (B, H): y_T = h_T
            else:
                h = self.hidden_size
                z = torch.cat([y[:, -1, :h], y[:, 0, h:]], dim=1)  # (B, 2H): forward h_T, backward h_1
        elif self.readout == "mean":
            z = y.mean(dim=1)  # (B, D*H)
        else:  # flatten
            z = y.reshape(y.shape[0], -1)  # (B, T*D*H)
        return self.out(z)  # (B, out_features)

    def _forward_masked(self, seq: torch.Tensor) -> torch.Tensor:
        """Each sequence its own length l: packed (or stepped with the mask, for cell=mlp), so the padding never
        enters; last = the forward direction at step l and the backward one at step 1; mean over the l steps."""
        lengths = seq[..., -1].sum(dim=1).round().long().clamp_min(1)  # (B,)
        seq = seq[..., :-1]
        if isinstance(self.rnn, MLPRecurrence):
            y, _ = self.rnn(seq, lengths)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = self.rnn(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=seq.shape[1])
        rows = torch.arange(len(y), device=y.device)
        if self.readout == "mean":
            z = y.sum(dim=1) / lengths[:, None].to(y.dtype)  # padded outputs are 0
        elif self.directions == 1:
            z = y[rows, lengths - 1]
        else:
            h = self.hidden_size
            z = torch.cat([y[rows, lengths - 1, :h], y[:, 0, h:]], dim=1)
        return self.out(z)


def build_rnn(cfg: RNNConfig, input_shape: tuple[int, ...], out_features: int, masked: bool = False) -> nn.Module:
    """Recurrent network (rnn, lstm or gru) reading a signal step by step or an image row by row."""
    return RNN(
        tuple(input_shape),
        out_features,
        cell=cfg.cell,
        hidden_size=cfg.hidden_size,
        layers=cfg.layers,
        bidirectional=cfg.bidirectional,
        readout=cfg.readout,
        dropout=cfg.dropout,
        cell_hidden=tuple(getattr(cfg, "cell_hidden", (64,))),
        masked=masked,
    )


def fits(task) -> str | None:
    """None when model=rnn can read the task's inputs (signals, images), else a one-line reason."""
    return fit_reason("rnn", task.input_kind, task.input_shape)
