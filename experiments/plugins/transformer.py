"""model=tiny_transformer: a small Transformer encoder over the time steps of a signal (or the rows of an image)."""

import torch
from torch import nn

from dlrun.models import MODELS
from dlrun.options import FieldError, ModelConfig, opt, option


@option(
    "model", "tiny_transformer", inputs=("signal", "image"), reads="reads sequences of tokens (signals or image rows)"
)
class TransformerConfig(ModelConfig):
    """Transformer encoder: tokens = time steps, learned positions, mean pooling, linear head"""

    d_model: int = opt(32, ge=1)  # width of each token
    heads: int = opt(4, ge=1)  # attention heads; d_model must be a multiple
    layers: int = opt(2, ge=1)  # encoder layers
    ff: int = opt(64, ge=1)  # hidden width of each layer's feed-forward block
    dropout: float = opt(0.0, ge=0.0, lt=1.0)

    def check(self):
        if self.d_model % self.heads:
            raise FieldError("heads", f"d_model={self.d_model} is not a multiple of heads={self.heads}")


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig, input_shape: tuple[int, ...], out_features: int):
        super().__init__()
        features, steps = input_shape[0] * (input_shape[1] if len(input_shape) == 3 else 1), input_shape[-1]
        self.embed = nn.Linear(features, cfg.d_model)  # one token per time step (per image column)
        self.position = nn.Parameter(torch.zeros(1, steps, cfg.d_model))
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, cfg.ff, cfg.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.head = nn.Linear(cfg.d_model, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) or (B, C, H, W)
        tokens = x.flatten(1, -2).transpose(1, 2)  # (B, L, C) or (B, W, C*H)
        h = self.encoder(self.embed(tokens) + self.position)
        return self.head(h.mean(dim=1))


@MODELS.register("tiny_transformer")
def build_transformer(cfg, input_shape, out_features):
    return Transformer(cfg, input_shape, out_features)
