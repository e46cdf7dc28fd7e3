"""nequil: parameter symmetry and the noise equilibrium of SGD, from Python.

The Rust library behind the ``nequil`` command, over NumPy arrays:

* :class:`Model`: a model from a ``[model]`` table (a dict or a TOML file), or from a PyTorch
  ``nn.Sequential`` (:meth:`Model.from_torch`); its catalog of exponential symmetries
  (:meth:`Model.symmetries`).
* :func:`noise_stats`: per-parameter gradient means and variances, and every symmetry's noise
  imbalance ``Tr[A Σ]`` with its parts ``Tr[A₊Σ]`` and ``Tr[A₋Σ]``.
* :func:`equilibrium`: the noise equilibrium of every symmetry (``nequil equilibrium``) and the
  rebalanced weights: the same function and loss, with balanced gradient noise.
* :func:`hessian`: the Hessian of the mean loss as an operator (products, trace, eigenvalues).
* :func:`run`: a training run of a spec (``nequil run``); :func:`reproduce`: the paper's figures.
* :mod:`nequil.torch`: the PyTorch side (``Monitor`` for a training loop, ``from_torch``).

Conventions (as everywhere in nequil): per-sample loss ``‖f(x) − y‖²`` (no ½; or cross-entropy over
logits and integer labels with ``loss="cross-entropy"``), mean over the
samples; weight decay ``γ‖θ‖²`` in the loss; ``Σ`` the per-sample gradient covariance (weight
``1/n``); parameters are state dicts (name → array) with PyTorch's names and shapes. Arrays are
float64; float32 (and float16) arrays and PyTorch tensors are accepted and converted. Bad input
raises ``ValueError`` (``FileNotFoundError`` for a missing file) with the command-line tool's
message; computations release the GIL.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core

__version__: str = _core.__version__

__all__ = [
    "Model",
    "NoiseStats",
    "Equilibrium",
    "Hessian",
    "RunResult",
    "noise_stats",
    "equilibrium",
    "hessian",
    "run",
    "reproduce",
    "experiments",
    "simd",
    "__version__",
]

ArrayLike = Any
"""A NumPy array, a PyTorch tensor, or anything ``np.asarray`` takes (floating point)."""

Params = Mapping[str, ArrayLike]
"""A state dict: parameter name → array, with PyTorch's names and shapes."""


# ---------------------------------------------------------------------------------------------
# Arrays across the boundary


def _as_float64(a: ArrayLike, name: str) -> np.ndarray:
    """``a`` as a C-contiguous float64 array; float32/float16 are converted, tensors detached."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a PyTorch tensor, without importing torch
        a = a.detach().cpu()
        if hasattr(a, "resolve_conj"):
            a = a.resolve_conj()
        a = a.numpy()
    arr = np.asarray(a)
    if arr.dtype == np.float64:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "f":
        return np.ascontiguousarray(arr, dtype=np.float64)
    raise ValueError(
        f"{name}: an array of dtype {arr.dtype} (give float64, or float32, which is converted)"
    )


def _arr(a: ArrayLike, name: str) -> Tuple[bytes, List[int]]:
    """An array as (bytes of native float64, shape) for ``_core``."""
    arr = _as_float64(a, name)
    return arr.tobytes(), list(arr.shape)


def _targets(model: "Model", y: ArrayLike, name: str = "y") -> Tuple[bytes, List[int]]:
    """Targets for ``model``'s loss: float arrays for ``"mse"``; with ``"cross-entropy"`` integer
    class labels as well (any integer dtype, converted exactly to float64; the range is checked
    by ``_core``)."""
    if model.loss == "cross-entropy":
        if hasattr(y, "detach") and hasattr(y, "cpu"):
            y = y.detach().cpu().numpy()
        arr = np.asarray(y)
        if arr.dtype.kind in "iu":
            if arr.size and (arr.max() >= 2**53 or arr.min() <= -(2**53)):
                raise ValueError(f"{name}: class labels must be below 2**53 in magnitude")
            arr = np.ascontiguousarray(arr, dtype=np.float64)
            return arr.tobytes(), list(arr.shape)
    return _arr(y, name)


def _from_bytes(b: bytes, shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """A writable float64 array from ``_core``'s bytes."""
    arr = np.frombuffer(b, dtype=np.float64).copy()
    return arr.reshape(shape) if shape is not None else arr


def _jsonable(v: Any, key: str) -> Any:
    """A spec value as plain JSON types (NumPy scalars and arrays, tuples, paths converted)."""
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x, f"{key}.{k}" if key else str(k)) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x, f"{key}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist(), key)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not np.isfinite(f):
            raise ValueError(f"{key}: {f} is not a finite number")
        return f
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if v is None:
        raise ValueError(f"{key}: None has no TOML form (leave the key out for its default)")
    if isinstance(v, str):
        return v
    raise ValueError(f"{key}: a value of type {type(v).__name__} cannot appear in a spec")


# ---------------------------------------------------------------------------------------------
# Models


class Model:
    """A model nequil can analyse and train: a ``[model]`` table, built and checked.

    ``Model(spec)`` takes the ``[model]`` table as a dict (``{"kind": "mlp", "widths": [8, 32,
    1], "bias": True}``, or ``kind = "sequential"`` with ``input`` and ``layers``, see the book's
    spec reference), a whole run spec as a dict (its ``"model"`` table is used), or the path of a
    TOML file (a run spec or a file holding only ``[model]``). Errors name the key, as the
    command-line tool does; a model whose parameters and buffers would not fit in memory is refused
    (``ValueError``) before anything is allocated.

    Parameters are state dicts with PyTorch's names and shapes (``layers.0.weight`` is
    ``[out, in]`` for ``kind = "mlp"``, ``0.weight`` for the first layer of a sequential stack).

    ``loss`` (``"mse"``, the default, or ``"cross-entropy"``) overrides the table's ``loss`` key:
    ``"mse"`` scores ``‖f(x) − y‖²`` per sample (summed over outputs, no ½); ``"cross-entropy"``
    reads the output's last axis as logits and takes integer class labels ``y`` of shape ``[n]``
    (``[n, T]`` for a sequence model's ``[T, K]`` logits, the per-sample loss then the mean over
    the T positions).
    """

    _inner: Any

    def __init__(self, spec: Union[Mapping[str, Any], str, "os.PathLike[str]"], loss: Optional[str] = None) -> None:
        if isinstance(spec, Mapping):
            table = spec["model"] if isinstance(spec.get("model"), Mapping) else spec
            self._inner = _core.Model.from_json(json.dumps(_jsonable(table, "model")))
        elif isinstance(spec, (str, os.PathLike)):
            self._inner = _core.Model.from_file(os.fspath(spec))
        else:
            raise TypeError(
                f"Model: expected a dict (the [model] table) or a path to a TOML file, got {type(spec).__name__}"
            )
        if loss is not None:
            self._inner = self._inner.with_loss(str(loss))
        self._layout: List[Tuple[str, Tuple[int, ...]]] = [(n, tuple(s)) for n, s in self._inner.layout()]

    @classmethod
    def from_torch(cls, module: Any, input_shape: Optional[Sequence[int]] = None, loss: Optional[str] = None) -> "Model":
        """The model of a PyTorch ``nn.Sequential`` or ``nn.ModuleList`` stack.

        Supported layers: ``Linear``, ``Conv2d`` and ``Conv1d`` (zero padding, groups, dilation),
        ``AdaptiveAvgPool2d``, ``AdaptiveAvgPool1d``, ``MaxPool2d``, ``AvgPool2d``, ``Flatten``,
        ``LayerNorm`` and ``RMSNorm`` (last axis), ``GroupNorm``, ``BatchNorm1d``/``2d``/``3d``
        (eval mode, running statistics copied into the spec), ``ReLU``, ``LeakyReLU``, ``Tanh``,
        ``SiLU``, ``Sigmoid``, ``GELU``, ``Softplus``, ``Hardswish``, ``Identity``,
        ``Dropout(p=0)``, and
        :class:`nequil.torch.SelfAttention`, :class:`nequil.torch.Residual`,
        :class:`nequil.torch.MeanPool`. Any other module is a ``ValueError`` naming it and its
        position. ``input_shape`` is the per-sample input shape (``[d]``, ``[C, H, W]``,
        ``[T, d]``); it may be left out when the first layer is ``Linear``. The parameter names
        are the module's ``state_dict()`` names. ``loss`` is the model's loss (``"mse"`` or
        ``"cross-entropy"``, see :class:`Model`).
        """
        from .torch import spec_from_torch

        return cls(spec_from_torch(module, input_shape), loss=loss)

    def with_loss(self, loss: str) -> "Model":
        """The same model (architecture and parameter names) scored by ``loss``: ``"mse"`` or
        ``"cross-entropy"`` (a ``ValueError`` naming ``loss`` for any other name, or for
        cross-entropy on an output with fewer than 2 logits)."""
        m = Model.__new__(Model)
        m._inner = self._inner.with_loss(str(loss))
        m._layout = list(self._layout)
        return m

    @property
    def loss(self) -> str:
        """The per-sample loss: ``"mse"`` or ``"cross-entropy"``."""
        return str(self._inner.loss)

    @property
    def d_y(self) -> int:
        """Target values per sample: ``d_out`` for ``"mse"``; one integer class label per position
        for ``"cross-entropy"`` (1 for logits ``[K]``, T for a sequence's ``[T, K]``)."""
        return int(self._inner.d_y)

    @property
    def spec(self) -> Dict[str, Any]:
        """The ``[model]`` table with every default filled in."""
        return json.loads(self._inner.spec_json())

    @property
    def n_params(self) -> int:
        """The number of parameters P."""
        return int(self._inner.n_params)

    @property
    def d_in(self) -> int:
        """Values per input sample (the product of the input shape)."""
        return int(self._inner.d_in)

    @property
    def d_out(self) -> int:
        """Values per output sample (and per target with ``"mse"``)."""
        return int(self._inner.d_out)

    @property
    def layout(self) -> Dict[str, Tuple[int, ...]]:
        """Parameter name → shape, in the model's order."""
        return dict(self._layout)

    def describe(self) -> str:
        """The model in words, as the command-line tool prints it."""
        return str(self._inner.describe())

    def __repr__(self) -> str:
        return f"nequil.Model({self.describe()!r}, n_params={self.n_params})"

    def symmetries(self, generators: bool = False) -> List[Dict[str, Any]]:
        """The catalog: every exponential symmetry ``θ → e^{λA}θ`` of the model, derived from its
        layers.

        Each entry is a dict with ``name`` (``neuron.0.3``, ``layer_pair.0``, ``channel.0.5``,
        ``scale``, …), ``kind`` (``neuron_rescaling``, ``layer_pair_rescaling``, …) and the
        location keys of its kind (``layer``, ``neuron``, …). With ``generators=True`` each also
        has ``generator``: the diagonal of ``A`` as a flat array of P values in layout order
        (:meth:`unflatten` makes it a state dict), or the ``P × P`` matrix for a non-diagonal one.
        """
        cat = json.loads(self._inner.catalog_json())
        out: List[Dict[str, Any]] = []
        for s in cat["symmetries"]:
            entry = {"name": s["name"]}
            entry.update(s["kind"])
            out.append(entry)
        if generators:
            p = self.n_params
            for entry, (data, diagonal) in zip(out, self._inner.generators()):
                entry["generator"] = _from_bytes(data, None if diagonal else (p, p))
        return out

    def families(self) -> List[Dict[str, Any]]:
        """The matrix families (double rotations between dense layers, attention's query–key and
        value–output rotations per head): ``name`` and the dimension ``dim`` of their generators."""
        return list(json.loads(self._inner.catalog_json())["families"])

    def notes(self) -> List[str]:
        """Remarks of the catalog (why a layer has no symmetry, what is not listed)."""
        return list(json.loads(self._inner.catalog_json())["notes"])

    def flatten(self, params: Params) -> np.ndarray:
        """θ as one flat float64 vector in layout order from a state dict; every tensor of the
        layout must be present with its shape, no other may be, every value finite (the messages
        of ``nequil equilibrium --weights``)."""
        return _from_bytes(self._inner.flatten(self._tensors(params)))

    def unflatten(self, theta: ArrayLike) -> Dict[str, np.ndarray]:
        """A state dict (name → float64 array of its shape) from a flat vector in layout order."""
        v = _as_float64(theta, "theta").reshape(-1)
        if v.size != self.n_params:
            raise ValueError(f"theta: {v.size} values, the model {self.describe()} has {self.n_params} parameters")
        out: Dict[str, np.ndarray] = {}
        i = 0
        for name, shape in self._layout:
            k = int(np.prod(shape, dtype=np.int64))
            out[name] = v[i : i + k].reshape(shape).copy()
            i += k
        return out

    def init(self, seed: int = 0) -> Dict[str, np.ndarray]:
        """Initial parameters drawn as ``nequil run`` draws them for a spec with this ``[model]``
        table and ``seed`` (the ``init`` key: Kaiming by default)."""
        return self.unflatten(_from_bytes(self._inner.init(int(seed))))

    def forward(self, params: Params, x: ArrayLike) -> np.ndarray:
        """The outputs ``f(x)`` (``[n, d_out]``) for inputs ``x`` (``[n, …]``)."""
        xb, xs = _arr(x, "x")
        out = _from_bytes(self._inner.forward(self._theta_bytes(params), xb, xs))
        return out.reshape(-1, self.d_out)

    __call__ = forward

    def _tensors(self, params: Params) -> List[Tuple[str, List[int], bytes]]:
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a state dict (name → array), got {type(params).__name__}")
        out = []
        for name, value in params.items():
            if str(name).rsplit(".", 1)[-1] == "num_batches_tracked":
                # A batch norm's step counter (an int64 buffer of state_dict()): unused, and
                # exact in float64 (a count below 2**53).
                if hasattr(value, "detach") and hasattr(value, "cpu"):
                    value = value.detach().cpu().numpy()
                value = np.asarray(value, dtype=np.float64)
            arr = _as_float64(value, f"params[{name!r}]")
            out.append((str(name), list(arr.shape), arr.tobytes()))
        return out

    def _theta_bytes(self, params: Params) -> bytes:
        return bytes(self._inner.flatten(self._tensors(params)))


def _model(model: Any) -> Model:
    if isinstance(model, Model):
        return model
    if isinstance(model, Mapping):
        return Model(model)
    if hasattr(model, "state_dict") and hasattr(model, "parameters"):
        return Model.from_torch(model)
    raise TypeError(f"model: expected a nequil.Model, a [model] dict or a PyTorch module, got {type(model).__name__}")


def _params(model: Model, params: Any) -> bytes:
    if hasattr(params, "state_dict") and not isinstance(params, Mapping):
        params = params.state_dict()
    return model._theta_bytes(params)


# ---------------------------------------------------------------------------------------------
# Results


def _columns(rows: List[Dict[str, Any]]) -> Dict[str, np.ndarray]:
    """A list of row dicts as a dict of arrays (numbers as float64, the rest as object arrays)."""
    if not rows:
        return {}
    out: Dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        if all(isinstance(v, bool) for v in values):
            out[key] = np.array(values, dtype=bool)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = np.array([float(v) for v in values], dtype=np.float64)
        else:
            out[key] = np.array(values, dtype=object)
    return out


class NoiseStats:
    """Per-sample gradient statistics at given weights (:func:`noise_stats`).

    Attributes:
        loss: the mean loss ``(1/n) Σ ℓ_i`` (``ℓ_i = ‖f(x_i) − y_i‖²``, or cross-entropy).
        n: the number of samples.
        mean: the mean gradient ``∇L`` as a state dict.
        variance: the per-parameter variance ``diag Σ`` (weight ``1/n``) as a state dict.
        rows: one dict per catalog symmetry: ``name``, ``kind``, ``C`` (the charge ``θᵀAθ``),
            ``tr_a_sigma`` (``Tr[AΣ]``), ``tr_a_sigma_pos`` (``Tr[A₊Σ] ≥ 0``, the noise pushing C
            up), ``tr_a_sigma_neg`` (``Tr[A₋Σ] ≤ 0``), ``grad_quad`` (``∇LᵀA∇L``).
    """

    loss: float
    n: int
    mean: Dict[str, np.ndarray]
    variance: Dict[str, np.ndarray]
    rows: List[Dict[str, Any]]

    def __init__(self, model: Model, raw: Mapping[str, Any]) -> None:
        self.loss = float(raw["loss"])
        self.n = int(raw["n"])
        self.mean = model.unflatten(_from_bytes(raw["mean"]))
        self.variance = model.unflatten(_from_bytes(raw["var"]))
        self.rows = []
        for r in json.loads(raw["rows"]):
            kind = r.pop("kind")
            r["kind"] = kind.pop("kind")
            r.update({k: v for k, v in kind.items()})
            self.rows.append(r)

    @property
    def columns(self) -> Dict[str, np.ndarray]:
        """:attr:`rows` as a dict of arrays (one entry per key)."""
        return _columns(self.rows)

    @property
    def tr_a_sigma(self) -> Dict[str, float]:
        """Symmetry name → ``Tr[AΣ]``."""
        return {r["name"]: r["tr_a_sigma"] for r in self.rows}

    def __repr__(self) -> str:
        return f"nequil.NoiseStats(loss={self.loss:.6g}, n={self.n}, symmetries={len(self.rows)})"


def _num(v: Any) -> float:
    """A JSON number of the report; non-finite values are the strings ``inf``, ``-inf``, ``NaN``."""
    return float(v)


class Equilibrium:
    """The noise equilibrium of every catalog symmetry at given weights (:func:`equilibrium`).

    ``str(result)`` is the table ``nequil equilibrium`` prints. :attr:`report` is the command's
    ``--json`` report (less its file names); :attr:`rows` its rows (one per symmetry: ``name``,
    ``kind``, ``c``, ``tr_a_sigma``, ``tr_a_sigma_pos``, ``tr_a_sigma_neg``, ``drift``,
    ``lambda_star``, ``status``, ``note``, ``c_star``, ``applied``, ``loss_before``,
    ``loss_after``, ``tr_a_sigma_after``, … with ``±inf`` as floats), :attr:`columns` the same as
    a dict of arrays. :attr:`rebalanced` is θ moved to the joint equilibrium of the applied rows
    (same function, same loss) as a state dict of float64 arrays:
    ``module.load_state_dict({k: torch.from_numpy(v) for k, v in result.rebalanced.items()})``.
    """

    report: Dict[str, Any]
    rows: List[Dict[str, Any]]
    rebalanced: Dict[str, np.ndarray]

    def __init__(self, model: Model, json_text: str, table: str, theta: bytes) -> None:
        self.report = json.loads(json_text)
        self._table = table
        self.rebalanced = model.unflatten(_from_bytes(theta))
        self.rows = []
        for r in self.report["rows"]:
            r = dict(r)
            kind = dict(r.pop("kind"))
            r["kind"] = kind.pop("kind")
            r.update(kind)
            for k in ("lambda_star", "c_star"):
                r[k] = _num(r[k])
            self.rows.append(r)

    @property
    def columns(self) -> Dict[str, np.ndarray]:
        """:attr:`rows` as a dict of arrays (one entry per key)."""
        return _columns(self.rows)

    @property
    def families(self) -> List[Dict[str, Any]]:
        """The matrix families' balances (reported, not applied)."""
        return list(self.report["families"])

    @property
    def loss_before(self) -> float:
        """The mean loss at the given weights."""
        return float(self.report["loss_before"])

    @property
    def loss_after(self) -> float:
        """The mean loss at the rebalanced weights (equal up to rounding)."""
        return float(self.report["loss_after"])

    @property
    def totals(self) -> Dict[str, Any]:
        """Sums over the applied rows before and after: ``applied``, ``imbalance_before``,
        ``imbalance_after`` (``Σ_k |Tr[A_kΣ]|``), ``noise_before``, ``noise_after``,
        ``drift_before``, ``drift_after``."""
        return dict(self.report["totals"])

    def __str__(self) -> str:
        return self._table

    def __repr__(self) -> str:
        t = self.report["totals"]
        return (
            f"nequil.Equilibrium({len(self.rows)} symmetries, {t['applied']} applied; "
            f"imbalance {t['imbalance_before']:.3e} → {t['imbalance_after']:.3e})"
        )


class Hessian:
    """The Hessian ``H = ∇²L(θ)`` of the mean loss ``(1/n) Σ ‖f(x_i) − y_i‖²`` (no ½, no weight
    decay) at given weights, as an operator: exact products (no finite differences), its trace and
    its extreme eigenvalues. Made by :func:`hessian`."""

    def __init__(self, model: Model, inner: Any) -> None:
        self._model = model
        self._inner = inner

    @property
    def dim(self) -> int:
        """The number of parameters P (H is P × P)."""
        return int(self._inner.dim)

    def hvp(self, v: Union[ArrayLike, Params]) -> Any:
        """The product ``Hv``: ``v`` a flat vector of P values in layout order (returns one), or a
        state dict (returns one)."""
        if isinstance(v, Mapping):
            flat = self._model.flatten(v)
            return self._model.unflatten(_from_bytes(self._inner.hvp(flat.tobytes())))
        arr = _as_float64(v, "v").reshape(-1)
        return _from_bytes(self._inner.hvp(arr.tobytes()))

    def trace(self, max_exact: int = 512, probes: int = 32, seed: int = 0) -> float:
        """``Tr H``: exact (P products) when ``P ≤ max_exact``, else Hutchinson's estimate with
        ``probes`` Rademacher vectors drawn from ``seed`` (its standard error is
        :meth:`trace_estimate`'s)."""
        return self.trace_estimate(max_exact, probes, seed)["estimate"]

    def trace_estimate(self, max_exact: int = 512, probes: int = 32, seed: int = 0) -> Dict[str, Any]:
        """The trace with how it was obtained: ``estimate``, ``std_error`` (0 when exact),
        ``exact``, ``products``."""
        est, se, exact, n = self._inner.trace(int(max_exact), int(probes), int(seed))
        return {"estimate": est, "std_error": se, "exact": exact, "products": n}

    def top_eigenvalues(
        self, k: int = 1, which: str = "largest", tol: float = 1e-6, max_iter: int = 80, seed: int = 0
    ) -> np.ndarray:
        """The ``k`` largest (``which="largest"``, descending) or smallest (``"smallest"``,
        ascending) eigenvalues, by Lanczos with full reorthogonalization from a seeded start. A
        pair has converged when ``‖Hv − λv‖ ≤ tol · |λ|_max``; raises ``ArithmeticError`` if not
        every pair converged within ``max_iter`` products (raise it)."""
        if which not in ("largest", "smallest"):
            raise ValueError(f"which: \"largest\" or \"smallest\", got {which!r}")
        values, residuals, converged, iterations = self._inner.top_eigenvalues(
            int(k), which == "largest", int(max_iter), float(tol), int(seed)
        )
        if not converged:
            raise ArithmeticError(
                f"Hessian.top_eigenvalues: Lanczos did not converge in {iterations} products "
                f"(residuals {residuals}); raise max_iter or tol"
            )
        return np.array(values, dtype=np.float64)

    def eigenvalues(self) -> np.ndarray:
        """Every eigenvalue, ascending, from the dense matrix (P products; P ≤ 2048)."""
        return np.array(self._inner.eigenvalues(), dtype=np.float64)

    def __repr__(self) -> str:
        return f"nequil.Hessian(dim={self.dim}, model={self._model.describe()!r})"


# ---------------------------------------------------------------------------------------------
# The analyses


def _with_loss(m: Model, loss: Optional[str]) -> Model:
    return m if loss is None else m.with_loss(loss)


def noise_stats(model: Any, params: Any, x: ArrayLike, y: ArrayLike, loss: Optional[str] = None) -> NoiseStats:
    """Per-sample gradient statistics at ``params`` on the samples ``(x, y)``.

    ``model`` is a :class:`Model` (or a ``[model]`` dict, or a supported PyTorch module),
    ``params`` a state dict (or the module itself), ``x`` of shape ``[n, …]`` with ``d_in`` values
    per sample and ``y`` of shape ``[n, d_out]`` (or ``[n]`` when ``d_out = 1``). Returns the
    per-parameter means and variances of the gradients and every catalog symmetry's ``Tr[AΣ]``
    split into ``Tr[A₊Σ]`` and ``Tr[A₋Σ]`` (:class:`NoiseStats`); the same numbers as
    ``nequil equilibrium --stats`` and its rows. ``loss`` overrides the model's loss (``"mse"`` or
    ``"cross-entropy"``, whose ``y`` are integer class labels ``[n]``, see :class:`Model`).
    """
    m = _with_loss(_model(model), loss)
    raw = _core.noise_stats(m._inner, _params(m, params), _arr(x, "x"), _targets(m, y))
    return NoiseStats(m, raw)


def equilibrium(
    model: Any,
    params: Any,
    x: ArrayLike,
    y: ArrayLike,
    lr: float,
    batch_size: int,
    weight_decay: float = 0.0,
    discrete: bool = False,
    loss: Optional[str] = None,
) -> Equilibrium:
    """The noise equilibrium of every catalog symmetry of ``model`` at ``params`` for SGD with
    learning rate ``lr``, batch size ``batch_size`` and weight decay ``weight_decay`` (the loss
    carrying ``γ‖θ‖²``), on the samples ``(x, y)``: ``nequil equilibrium`` as a function.

    Continuous time solves ``4γC = (η/S) Tr[AΣ]`` on each symmetry's orbit; ``discrete=True`` the
    per-step ``E[ΔC] = 0``. Returns an :class:`Equilibrium`: the command's table (``str``), its
    JSON report, the rows, and the rebalanced weights (same function and loss, balanced noise).
    ``loss`` overrides the model's loss (``"mse"`` or ``"cross-entropy"``, see :class:`Model`).
    """
    m = _with_loss(_model(model), loss)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size: an integer ≥ 1, got {batch_size!r}")
    j, table, theta = _core.equilibrium(
        m._inner, _params(m, params), _arr(x, "x"), _targets(m, y),
        float(lr), int(batch_size), float(weight_decay), bool(discrete),
    )
    return Equilibrium(m, j, table, theta)


def hessian(model: Any, params: Any, x: ArrayLike, y: ArrayLike, loss: Optional[str] = None) -> Hessian:
    """The Hessian of the mean loss over ``(x, y)`` at ``params`` (no weight decay: add ``2γ`` to
    its eigenvalues for the loss with ``γ‖θ‖²``), as a :class:`Hessian` with ``hvp``, ``trace``
    and ``top_eigenvalues``. The data and weights are checked and copied once. ``loss`` overrides
    the model's loss (``"mse"`` or ``"cross-entropy"``: the exact Hessian, output Hessian
    ``diag(p) − ppᵀ`` included)."""
    m = _with_loss(_model(model), loss)
    return Hessian(m, _core.Hessian(m._inner, _params(m, params), _arr(x, "x"), _targets(m, y)))


class RunResult:
    """A finished (or stopped) training run (:func:`run`).

    Attributes:
        columns: the log's column names, as in ``metrics.csv``.
        metrics: column name → float64 array over the recorded rows.
        params: the final parameters as a state dict (the last completed step's if it diverged).
        summary: ``summary.json`` as a dict (``status``, ``steps_done``, ``final_row``, …).
        spec: the spec with every default filled in, as TOML text (``spec.toml``).
        status: ``"ok"``, ``"diverged"`` or ``"failed"``.
        error: the message of a run that stopped early, or ``None``.
    """

    columns: List[str]
    metrics: Dict[str, np.ndarray]
    params: Dict[str, np.ndarray]
    summary: Dict[str, Any]
    spec: str
    status: str
    error: Optional[str]

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.columns = list(raw["columns"])
        rows = _from_bytes(raw["rows"]).reshape(int(raw["n_rows"]), len(self.columns))
        self.metrics = {c: rows[:, j].copy() for j, c in enumerate(self.columns)}
        theta = _from_bytes(raw["theta"])
        self.params = {}
        i = 0
        for name, shape in raw["layout"]:
            k = int(np.prod(shape, dtype=np.int64))
            self.params[name] = theta[i : i + k].reshape(shape).copy()
            i += k
        self.summary = json.loads(raw["summary"])
        self.spec = str(raw["spec"])
        self.status = str(self.summary["status"])
        self.error = raw["error"]

    def __getitem__(self, column: str) -> np.ndarray:
        return self.metrics[column]

    def __repr__(self) -> str:
        return f"nequil.RunResult(status={self.status!r}, steps_done={self.summary['steps_done']}, rows={len(next(iter(self.metrics.values()), []))})"


def run(spec: Union[Mapping[str, Any], str, "os.PathLike[str]"], out: Optional[Union[str, "os.PathLike[str]"]] = None) -> RunResult:
    """Trains as a run spec says: ``nequil run`` as a function.

    ``spec`` is the spec as a dict (the TOML file's tables: ``{"seed": 0, "model": {...},
    "data": {...}, "train": {...}, "probes": {...}}``; relative data paths are resolved against
    the current directory) or the path of a TOML spec file (relative data paths resolved against
    its directory). With ``out``, the run directory (``spec.toml``, ``metrics.csv``,
    ``final.safetensors``, ``summary.json``) is written as the command writes it. A run that
    diverges is not an exception: its :attr:`RunResult.status` is ``"diverged"`` and its metrics
    stop at the failing step. Bad specs raise ``ValueError`` naming the key.
    """
    out_s = os.fspath(out) if out is not None else None
    if isinstance(spec, Mapping):
        raw = _core.run(json.dumps(_jsonable(spec, "")), "json", os.getcwd(), out_s)
    elif isinstance(spec, (str, os.PathLike)):
        path = Path(os.fspath(spec))
        raw = _core.run(os.fspath(path), "path", os.fspath(path.parent), out_s)
    else:
        raise TypeError(f"run: expected a spec dict or the path of a TOML spec, got {type(spec).__name__}")
    return RunResult(raw)


def reproduce(
    names: Optional[Sequence[str]] = None,
    out: Union[str, "os.PathLike[str]"] = "nequil-out",
    full: bool = False,
    jobs: Optional[int] = None,
    fresh: bool = False,
) -> List[Dict[str, Any]]:
    """Re-runs the paper's experiments (all, or ``names``; see :func:`experiments`) into ``out``
    as ``nequil reproduce`` does: logs, ``summary.json``, figures (SVG and PNG) per experiment and
    ``out/report.html``. ``full`` runs the larger tier of ``nequil reproduce --full`` (larger sizes,
    more seeds and longer runs than the quick default; slower); the paper's own settings
    (``nequil reproduce --paper``) are the command's only. ``jobs`` worker threads (default: all
    cores). With ``full``, finished runs are recorded in
    ``out/<experiment>/runs/`` and loaded by the next call instead of run again (an interrupted
    call resumes); ``fresh`` deletes those records first. Returns each experiment's summary
    (``name``, ``passed``, ``failed``, ``checks``, …)."""
    if isinstance(names, str):
        names = [names]
    return json.loads(_core.reproduce(list(names or []), os.fspath(out), bool(full), jobs, bool(fresh)))


def experiments() -> List[Dict[str, str]]:
    """The experiments of :func:`reproduce`: ``name``, ``title`` and ``claim`` of each."""
    return [{"name": n, "title": t, "claim": c} for n, t, c in _core.experiments()]


def simd() -> Dict[str, Any]:
    """The SIMD kernels in use (``active``) and those this CPU supports (``supported``); chosen
    at import, forced with the ``NEQUIL_SIMD`` environment variable."""
    active, supported = _core.simd()
    return {"active": active, "supported": list(supported)}
