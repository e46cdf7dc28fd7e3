"""nequil for PyTorch: models from ``nn.Sequential`` stacks, and a monitor for training loops.

* :func:`spec_from_torch`: the ``[model]`` table of a stack of supported layers (what
  :meth:`nequil.Model.from_torch` builds).
* :class:`SelfAttention`, :class:`Residual`, :class:`MeanPool`: the three layers of nequil's
  stacks that PyTorch has no single module for (self-attention ``attn(x, x, x)``, a residual
  block ``x + F(x)``, the mean over a sequence), as modules to build stacks with.
* :class:`Monitor`: records the Noether charges of every symmetry, their noise imbalance
  ``Tr[A_kΣ]``, the predicted equilibrium ``C*`` and the distance ``C − C*`` during a PyTorch
  training loop, with the columns of a spec's ``[probes.charges]`` table.

Importing this module imports ``torch``; ``import nequil`` alone does not.
"""

from __future__ import annotations

import json
import os
import time as _time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from . import Model, _as_float64, _core, _targets

__all__ = ["spec_from_torch", "SelfAttention", "Residual", "MeanPool", "Monitor"]


class SelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` applied as self-attention ``attn(x, x, x)`` on ``[batch, T, E]``
    (``batch_first``), optionally with a causal mask: nequil's ``self-attention`` layer. The
    parameters keep PyTorch's names (``in_proj_weight``, ``in_proj_bias``, ``out_proj.weight``,
    ``out_proj.bias``)."""

    def __init__(self, embed_dim: int, num_heads: int, causal: bool = False, bias: bool = True) -> None:
        super().__init__(embed_dim, num_heads, bias=bias, batch_first=True)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        t = x.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1) if self.causal else None
        return super().forward(x, x, x, need_weights=False, attn_mask=mask)[0]


class Residual(nn.Sequential):
    """``x + F(x)`` with ``F`` the inner layers applied in order: nequil's ``residual`` layer (its
    children's parameters are named ``{i}.{j}.…``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x + super().forward(x)


class MeanPool(nn.Module):
    """The mean over the sequence axis, ``[batch, T, d] → [batch, d]``: nequil's ``mean-pool``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


_SUPPORTED = (
    "Linear, Conv2d, Conv1d, AdaptiveAvgPool2d, AdaptiveAvgPool1d, MaxPool2d, AvgPool2d, Flatten, LayerNorm, RMSNorm, GroupNorm, BatchNorm1d/2d/3d (eval mode), ReLU, LeakyReLU, Tanh, SiLU, Sigmoid, GELU, "
    "Softplus, Hardswish, Identity, "
    "Dropout(p=0), nequil.torch.SelfAttention, nequil.torch.Residual, nequil.torch.MeanPool"
)

# Every layer kind of nequil's registry (``LayerConfig`` in ``crates/nequil/src/core/layers/mod.rs``)
# with the PyTorch module that :func:`spec_from_torch` maps onto it. A test of the repository checks
# that this table and ``_NO_TORCH`` together list exactly the registered kinds, and that each kind
# here is emitted below.
_TORCH_KINDS = {
    "linear": "nn.Linear",
    "conv2d": "nn.Conv2d",
    "conv1d": "nn.Conv1d",
    "max-pool2d": "nn.MaxPool2d",
    "avg-pool2d": "nn.AvgPool2d",
    "adaptive-avg-pool2d": "nn.AdaptiveAvgPool2d",
    "adaptive-avg-pool1d": "nn.AdaptiveAvgPool1d",
    "flatten": "nn.Flatten",
    "layer-norm": "nn.LayerNorm",
    "rms-norm": "nn.RMSNorm",
    "group-norm": "nn.GroupNorm",
    "batch-norm": "nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d (eval mode)",
    "self-attention": "nequil.torch.SelfAttention",
    "mean-pool": "nequil.torch.MeanPool",
    "residual": "nequil.torch.Residual",
    "identity": "nn.Identity",
    "tanh": "nn.Tanh",
    "relu": "nn.ReLU",
    "leaky-relu": "nn.LeakyReLU",
    "swish": "nn.SiLU",
    "sigmoid": "nn.Sigmoid",
    "gelu": "nn.GELU",
    "softplus": "nn.Softplus",
    "hardswish": "nn.Hardswish",
}

# Registered kinds that no PyTorch module maps onto, each with the reason (none at present).
_NO_TORCH: Dict[str, str] = {}


def _unsupported(path: str, m: nn.Module, why: str = "") -> ValueError:
    what = f" ({why})" if why else ""
    return ValueError(
        f"nequil.Model.from_torch: unsupported module `{path}`: {type(m).__module__}.{type(m).__name__}{what}; "
        f"supported: {_SUPPORTED}"
    )


def _pair(v: Any) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _layer(m: nn.Module, path: str) -> Dict[str, Any]:
    t = type(m)
    if t is nn.Linear:
        return {"type": "linear", "out_features": m.out_features, "bias": m.bias is not None}
    if t is nn.ReLU:
        return {"type": "relu"}
    if t is nn.Tanh:
        return {"type": "tanh"}
    if t is nn.SiLU:
        return {"type": "swish"}
    if t is nn.Sigmoid:
        return {"type": "sigmoid"}
    if t is nn.GELU:
        return {"type": "gelu", "approximate": str(m.approximate)}
    if t is nn.Softplus:
        return {"type": "softplus", "beta": float(m.beta), "threshold": float(m.threshold)}
    if t is nn.Hardswish:
        return {"type": "hardswish"}
    if t is nn.Identity:
        return {"type": "identity"}
    if t is nn.Dropout:
        if m.p != 0:
            raise _unsupported(path, m, f"dropout with p = {m.p} is random; nequil's models are deterministic")
        return {"type": "identity"}
    if t is nn.LeakyReLU:
        return {"type": "leaky-relu", "slope": float(m.negative_slope)}
    if t is nn.Conv2d:
        kh, kw = _pair(m.kernel_size)
        sh, sw = _pair(m.stride)
        dh, dw = _pair(m.dilation)
        if m.padding_mode != "zeros":
            raise _unsupported(path, m, f"padding_mode {m.padding_mode!r}: zero padding only")
        if sh != sw:
            raise _unsupported(path, m, "the stride must be the same along both axes")
        if isinstance(m.padding, str):
            padding: Any = m.padding
        else:
            ph, pw = _pair(m.padding)
            padding = ph if ph == pw else [ph, pw]
        return {
            "type": "conv2d",
            "out_channels": m.out_channels,
            "kernel": kh if kh == kw else [kh, kw],
            "stride": sh,
            "padding": padding,
            "dilation": dh if dh == dw else [dh, dw],
            "groups": m.groups,
            "bias": m.bias is not None,
        }
    if t is nn.Conv1d:
        if m.padding_mode != "zeros":
            raise _unsupported(path, m, f"padding_mode {m.padding_mode!r}: zero padding only")
        return {
            "type": "conv1d",
            "out_channels": m.out_channels,
            "kernel": m.kernel_size[0],
            "stride": m.stride[0],
            "padding": m.padding if isinstance(m.padding, str) else m.padding[0],
            "dilation": m.dilation[0],
            "groups": m.groups,
            "bias": m.bias is not None,
        }
    if t is nn.AdaptiveAvgPool2d:
        oh, ow = _pair(m.output_size)
        if oh is None or ow is None:
            raise _unsupported(path, m, "give both output sizes (None, the input's size, is not mapped)")
        return {"type": "adaptive-avg-pool2d", "output_size": int(oh) if oh == ow else [int(oh), int(ow)]}
    if t is nn.AdaptiveAvgPool1d:
        (ol,) = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,)
        return {"type": "adaptive-avg-pool1d", "output_size": int(ol)}
    if t in (nn.MaxPool2d, nn.AvgPool2d):
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        pad = _pair(m.padding)
        if k[0] != k[1] or s[0] != s[1]:
            raise _unsupported(path, m, "square windows and equal strides only")
        if pad != (0, 0) or m.ceil_mode:
            raise _unsupported(path, m, "no padding and no ceil_mode")
        if t is nn.MaxPool2d and _pair(m.dilation) != (1, 1):
            raise _unsupported(path, m, "no dilation")
        if t is nn.AvgPool2d and m.divisor_override is not None:
            raise _unsupported(path, m, "no divisor_override")
        pool = {"type": "max-pool2d" if t is nn.MaxPool2d else "avg-pool2d", "kernel": k[0]}
        if s[0] != k[0]:
            pool["stride"] = s[0]
        return pool
    if t is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(path, m, "only Flatten(start_dim=1, end_dim=-1)")
        return {"type": "flatten"}
    if t is nn.LayerNorm:
        if len(m.normalized_shape) != 1:
            raise _unsupported(path, m, "normalization over the last axis only")
        affine = bool(m.elementwise_affine)
        if affine and getattr(m, "bias", True) is None:
            raise _unsupported(path, m, "an affine LayerNorm without bias")
        return {"type": "layer-norm", "eps": float(m.eps), "affine": affine}
    if getattr(nn, "RMSNorm", None) is not None and t is nn.RMSNorm:
        if len(m.normalized_shape) != 1:
            raise _unsupported(path, m, "normalization over the last axis only")
        rms: Dict[str, Any] = {"type": "rms-norm", "affine": bool(m.elementwise_affine)}
        if m.eps is not None:
            rms["eps"] = float(m.eps)
        return rms
    if t is nn.GroupNorm:
        return {"type": "group-norm", "num_groups": int(m.num_groups), "eps": float(m.eps), "affine": bool(m.affine)}
    if t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        if m.training:
            raise _unsupported(
                path, m,
                "in training mode it normalizes by each batch's statistics; call module.eval() to use its "
                "running statistics (training mode is future work)",
            )
        if not m.track_running_stats or m.running_mean is None:
            raise _unsupported(path, m, "without running statistics it normalizes by each batch's, even in eval mode")
        affine = bool(m.affine)
        return {
            "type": "batch-norm",
            "eps": float(m.eps),
            "affine": affine,
            "running_mean": [float(v) for v in m.running_mean.detach().double().cpu().reshape(-1)],
            "running_var": [float(v) for v in m.running_var.detach().double().cpu().reshape(-1)],
        }
    if isinstance(m, SelfAttention):
        if m.dropout != 0 or m.bias_k is not None or m.add_zero_attn or not m._qkv_same_embed_dim:
            raise _unsupported(path, m, "no dropout, no bias_kv, no zero attention, kdim = vdim = embed_dim")
        return {"type": "self-attention", "heads": m.num_heads, "causal": bool(m.causal), "bias": m.in_proj_bias is not None}
    if t is nn.MultiheadAttention:
        raise _unsupported(
            path, m,
            "it takes (query, key, value); for self-attention attn(x, x, x) use "
            "nequil.torch.SelfAttention(embed_dim, num_heads, causal=...)",
        )
    if isinstance(m, Residual):
        return {"type": "residual", "layers": [_layer(c, f"{path}.{i}") for i, c in enumerate(m)]}
    if isinstance(m, MeanPool):
        return {"type": "mean-pool"}
    raise _unsupported(path, m)


def spec_from_torch(module: nn.Module, input_shape: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """The ``[model]`` table (``kind = "sequential"``) of an ``nn.Sequential`` or
    ``nn.ModuleList`` whose children are supported layers, applied in order.

    ``input_shape`` is the per-sample input shape; without it, the first layer must be ``Linear``
    (its ``in_features``). An unsupported module is a ``ValueError`` naming its position and type.
    """
    if type(module) not in (nn.Sequential, nn.ModuleList):
        raise ValueError(
            f"nequil.Model.from_torch: expected an nn.Sequential or nn.ModuleList of supported layers, got "
            f"{type(module).__module__}.{type(module).__name__} (a module whose forward nequil cannot read; "
            f"build the same net as an nn.Sequential, or describe it with a [model] dict)"
        )
    children = list(module)
    if not children:
        raise ValueError("nequil.Model.from_torch: the stack is empty")
    layers = [_layer(c, str(i)) for i, c in enumerate(children)]
    if input_shape is None:
        first = children[0]
        if type(first) is not nn.Linear:
            raise ValueError(
                f"nequil.Model.from_torch: give input_shape (the per-sample input shape, e.g. [1, 28, 28]); "
                f"it is known only when the first layer is Linear, and it is {type(first).__name__}"
            )
        input_shape = [first.in_features]
    return {"kind": "sequential", "input": [int(d) for d in input_shape], "layers": layers}


def _flat_params(module: nn.Module, names: Sequence[str]) -> np.ndarray:
    """The module's parameters in nequil's layout order as one float64 vector (a copy)."""
    sd = module.state_dict()
    missing = [n for n in names if n not in sd]
    if missing:
        raise ValueError(
            f"nequil.torch.Monitor: the module has no parameter {missing[0]!r} "
            f"(it has: {', '.join(sd.keys())}); pass model= a nequil.Model whose names match"
        )
    with torch.no_grad():
        flat = torch.cat([sd[n].detach().reshape(-1).to(device="cpu", dtype=torch.float64) for n in names])
    return flat.numpy()


class Monitor:
    """Watches a PyTorch training loop through nequil's ``[probes.charges]`` instrument.

    ``Monitor(module, x_probe, y_probe, lr=η, batch_size=S, weight_decay=γ, every=k)``; call
    :meth:`step` after each optimizer step with the number of steps done. At step 0 and every
    ``every`` steps it reads the module's parameters (it never changes them, nor their gradients)
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
    parameter names). The loss convention is nequil's: ``‖f(x) − y‖²`` per sample (no ½;
    ``nn.MSELoss()`` divides by the outputs too), or with ``loss="cross-entropy"``
    ``−log softmax(f)_y`` over logits and integer class labels ``y_probe`` of shape ``[n]``
    (``nn.CrossEntropyLoss()``'s per-sample term); ``weight_decay`` is γ of ``γ‖θ‖²`` (PyTorch's
    SGD ``weight_decay`` is 2γ).
    """

    def __init__(
        self,
        module: nn.Module,
        x_probe: Any,
        y_probe: Any,
        *,
        lr: float,
        batch_size: int,
        weight_decay: float = 0.0,
        every: int = 1,
        symmetries: Union[str, Sequence[str]] = "all",
        time: str = "continuous",
        model: Optional[Model] = None,
        input_shape: Optional[Sequence[int]] = None,
        loss: Optional[str] = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every: an integer ≥ 1, got {every!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise ValueError(f"batch_size: an integer ≥ 1, got {batch_size!r}")
        self.module = module
        self.model = model if model is not None else Model.from_torch(module, input_shape)
        if loss is not None:
            self.model = self.model.with_loss(loss)
        self.every = int(every)
        self.lr = float(lr)
        self._names = list(self.model.layout.keys())
        charges = {"symmetries": [symmetries] if isinstance(symmetries, str) else list(symmetries), "time": time}
        x = _as_float64(x_probe, "x_probe")
        y = _targets(self.model, y_probe, "y_probe")
        self._rec = _core.ChargeRecorder(
            self.model._inner, json.dumps(charges), (x.tobytes(), list(x.shape)), y,
            self.lr, int(batch_size), float(weight_decay),
        )
        self.columns: List[str] = ["step", "t"] + list(self._rec.columns)
        self._rows: List[np.ndarray] = []
        self.seconds = 0.0
        # The module's parameters must match the model now, not at the first record.
        self.model.flatten(self.model.unflatten(_flat_params(module, self._names)))

    def step(self, step: int) -> Optional[Dict[str, float]]:
        """Records a row if ``step`` is on the schedule (``step % every == 0``); returns it as a
        dict (column → value), or ``None`` off the schedule. ``step`` is the number of optimizer
        steps done (0 before the first)."""
        if step % self.every != 0:
            return None
        start = _time.perf_counter()
        theta = _flat_params(self.module, self._names)
        values = np.frombuffer(self._rec.record(int(step), theta.tobytes()), dtype=np.float64)
        row = np.concatenate(([float(step), self.lr * step], values))
        self._rows.append(row)
        self.seconds += _time.perf_counter() - start
        return dict(zip(self.columns, row.tolist()))

    @property
    def history(self) -> Dict[str, np.ndarray]:
        """Column → float64 array over the recorded rows (``step``, ``t`` and the probe's
        columns)."""
        rows = np.array(self._rows, dtype=np.float64).reshape(len(self._rows), len(self.columns))
        return {c: rows[:, j].copy() for j, c in enumerate(self.columns)}

    def to_csv(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes the history as CSV, formatted as ``nequil run``'s ``metrics.csv`` (a header of
        column names, numbers that read back to the same bits)."""
        rows = np.array(self._rows, dtype=np.float64).reshape(len(self._rows), len(self.columns))
        text = _core.log_csv(self.columns, rows.tobytes())
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            f.write(text)

    def __repr__(self) -> str:
        return f"nequil.torch.Monitor({self.model.describe()!r}, every={self.every}, rows={len(self._rows)})"
