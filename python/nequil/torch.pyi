# Type stubs of nequil/torch.py (stubgen --include-docstrings, mypy); regenerate them when the API changes.
import numpy as np
import os
import torch
from . import Model
from _typeshed import Incomplete
from torch import nn
from typing import Any, Sequence

__all__ = ['SelfAttention', 'Residual', 'MeanPool', 'spec_from_torch', 'Monitor']

class SelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` applied as self-attention ``attn(x, x, x)`` on ``[batch, T, E]``
    (``batch_first``), optionally with a causal mask: nequil's ``self-attention`` layer. The
    parameters keep PyTorch's names (``in_proj_weight``, ``in_proj_bias``, ``out_proj.weight``,
    ``out_proj.bias``)."""
    causal: Incomplete
    def __init__(self, embed_dim: int, num_heads: int, causal: bool = False, bias: bool = True) -> None: ...
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

class Residual(nn.Sequential):
    """``x + F(x)`` with ``F`` the inner layers applied in order: nequil's ``residual`` layer (its
    children's parameters are named ``{i}.{j}.…``)."""
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

class MeanPool(nn.Module):
    """The mean over the sequence axis, ``[batch, T, d] → [batch, d]``: nequil's ``mean-pool``."""
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

def spec_from_torch(module: nn.Module, input_shape: Sequence[int] | None = None) -> dict[str, Any]:
    '''The ``[model]`` table (``kind = "sequential"``) of an ``nn.Sequential`` or
    ``nn.ModuleList`` whose children are supported layers, applied in order.

    ``input_shape`` is the per-sample input shape; without it, the first layer must be ``Linear``
    (its ``in_features``). An unsupported module is a ``ValueError`` naming its position and type.
    '''

class Monitor:
    '''Watches a PyTorch training loop through nequil\'s ``[probes.charges]`` instrument.

    ``Monitor(module, x_probe, y_probe, lr=η, batch_size=S, weight_decay=γ, every=k)``; call
    :meth:`step` after each optimizer step with the number of steps done. At step 0 and every
    ``every`` steps it reads the module\'s parameters (it never changes them, nor their gradients)
    and records, on the fixed probe set ``(x_probe, y_probe)`` and for each symmetry ``{name}`` of
    the catalog (or those selected by ``symmetries``), the columns of ``[probes.charges]``:

    * ``{name}/C``: the charge ``C = θᵀAθ``;
    * ``{name}/tr_a_sigma``: the noise imbalance ``Tr[AΣ]`` (per-sample gradient covariance of the
      probe set, weight ``1/n``);
    * ``{name}/drift``: the predicted drift ``Ċ = −4γC + (η/S)Tr[AΣ]`` per unit time (or the
      expected change per step with ``time="discrete"``);
    * ``{name}/C_star``: the predicted equilibrium charge on the current orbit;
    * ``{name}/C_minus_C_star``: the distance to equilibrium ``C − C*``.

    plus ``step`` and ``t = η · step``. ``history`` gives them as arrays; :meth:`to_csv` writes
    them as ``nequil run`` writes ``metrics.csv``. ``model`` is the nequil model of the module
    (default :meth:`nequil.Model.from_torch` of it), for modules that are not stacks (e.g. an MLP
    with its activations in ``forward``: ``nequil.Model({"kind": "mlp", ...})`` with matching
    parameter names). The loss convention is nequil\'s: ``‖f(x) − y‖²`` per sample (no ½), and
    ``weight_decay`` is γ of ``γ‖θ‖²`` (PyTorch\'s SGD ``weight_decay`` is 2γ).
    '''
    module: Incomplete
    model: Incomplete
    every: Incomplete
    lr: Incomplete
    columns: list[str]
    seconds: float
    def __init__(self, module: nn.Module, x_probe: Any, y_probe: Any, *, lr: float, batch_size: int, weight_decay: float = 0.0, every: int = 1, symmetries: str | Sequence[str] = 'all', time: str = 'continuous', model: Model | None = None, input_shape: Sequence[int] | None = None, loss: str | None = None) -> None: ...
    def step(self, step: int) -> dict[str, float] | None:
        """Records a row if ``step`` is on the schedule (``step % every == 0``); returns it as a
        dict (column → value), or ``None`` off the schedule. ``step`` is the number of optimizer
        steps done (0 before the first)."""
    @property
    def history(self) -> dict[str, np.ndarray]:
        """Column → float64 array over the recorded rows (``step``, ``t`` and the probe's
        columns)."""
    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Writes the history as CSV, formatted as ``nequil run``'s ``metrics.csv`` (a header of
        column names, numbers that read back to the same bits)."""
