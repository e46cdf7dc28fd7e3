# Type stubs of nequil/__init__.py (stubgen --include-docstrings, mypy); regenerate them when the API changes.
import numpy as np
import os
from typing import Any, Mapping, Sequence

__all__ = ['__version__', 'Model', 'NoiseStats', 'Equilibrium', 'Hessian', 'noise_stats', 'equilibrium', 'hessian', 'RunResult', 'run', 'reproduce', 'experiments', 'simd']

__version__: str
ArrayLike = Any
Params = Mapping[str, ArrayLike]

class Model:
    '''A model nequil can analyse and train: a ``[model]`` table, built and checked.

    ``Model(spec)`` takes the ``[model]`` table as a dict (``{"kind": "mlp", "widths": [8, 32,
    1], "bias": True}``, or ``kind = "sequential"`` with ``input`` and ``layers``, see the book\'s
    spec reference), a whole run spec as a dict (its ``"model"`` table is used), or the path of a
    TOML file (a run spec or a file holding only ``[model]``). Errors name the key, as the
    command-line tool does; a model whose parameters and buffers would not fit in memory is refused
    (``ValueError``) before anything is allocated.

    Parameters are state dicts with PyTorch\'s names and shapes (``layers.0.weight`` is
    ``[out, in]`` for ``kind = "mlp"``, ``0.weight`` for the first layer of a sequential stack).
    '''
    def __init__(self, spec: Mapping[str, Any] | str | os.PathLike[str], loss: str | None = None) -> None: ...
    @classmethod
    def from_torch(cls, module: Any, input_shape: Sequence[int] | None = None, loss: str | None = None) -> Model:
        """The model of a PyTorch ``nn.Sequential`` or ``nn.ModuleList`` stack.

        Supported layers: ``Linear``, ``Conv2d`` (zero padding, no groups or dilation),
        ``MaxPool2d``, ``AvgPool2d``, ``Flatten``, ``LayerNorm`` (last axis), ``ReLU``,
        ``LeakyReLU``, ``Tanh``, ``SiLU``, ``Identity``, ``Dropout(p=0)``, and
        :class:`nequil.torch.SelfAttention`, :class:`nequil.torch.Residual`,
        :class:`nequil.torch.MeanPool`. Any other module is a ``ValueError`` naming it and its
        position. ``input_shape`` is the per-sample input shape (``[d]``, ``[C, H, W]``,
        ``[T, d]``); it may be left out when the first layer is ``Linear``. The parameter names
        are the module's ``state_dict()`` names.
        """
    @property
    def spec(self) -> dict[str, Any]:
        """The ``[model]`` table with every default filled in."""
    @property
    def n_params(self) -> int:
        """The number of parameters P."""
    @property
    def d_in(self) -> int:
        """Values per input sample (the product of the input shape)."""
    def with_loss(self, loss: str) -> Model:
        """The same model scored by ``loss`` (``"mse"`` or ``"cross-entropy"``)."""
    @property
    def loss(self) -> str:
        """The per-sample loss: ``"mse"`` or ``"cross-entropy"``."""
    @property
    def d_y(self) -> int:
        """Target values per sample (``d_out`` for mse; one class label per position for
        cross-entropy)."""
    @property
    def d_out(self) -> int:
        """Values per output sample (and per target)."""
    @property
    def layout(self) -> dict[str, tuple[int, ...]]:
        """Parameter name → shape, in the model's order."""
    def describe(self) -> str:
        """The model in words, as the command-line tool prints it."""
    def symmetries(self, generators: bool = False) -> list[dict[str, Any]]:
        """The catalog: every exponential symmetry ``θ → e^{λA}θ`` of the model, derived from its
        layers.

        Each entry is a dict with ``name`` (``neuron.0.3``, ``layer_pair.0``, ``channel.0.5``,
        ``scale``, …), ``kind`` (``neuron_rescaling``, ``layer_pair_rescaling``, …) and the
        location keys of its kind (``layer``, ``neuron``, …). With ``generators=True`` each also
        has ``generator``: the diagonal of ``A`` as a flat array of P values in layout order
        (:meth:`unflatten` makes it a state dict), or the ``P × P`` matrix for a non-diagonal one.
        """
    def families(self) -> list[dict[str, Any]]:
        """The matrix families (double rotations between dense layers, attention's query–key and
        value–output rotations per head): ``name`` and the dimension ``dim`` of their generators."""
    def notes(self) -> list[str]:
        """Remarks of the catalog (why a layer has no symmetry, what is not listed)."""
    def flatten(self, params: Params) -> np.ndarray:
        """θ as one flat float64 vector in layout order from a state dict; every tensor of the
        layout must be present with its shape, no other may be, every value finite (the messages
        of ``nequil equilibrium --weights``)."""
    def unflatten(self, theta: ArrayLike) -> dict[str, np.ndarray]:
        """A state dict (name → float64 array of its shape) from a flat vector in layout order."""
    def init(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Initial parameters drawn as ``nequil run`` draws them for a spec with this ``[model]``
        table and ``seed`` (the ``init`` key: Kaiming by default)."""
    def forward(self, params: Params, x: ArrayLike) -> np.ndarray:
        """The outputs ``f(x)`` (``[n, d_out]``) for inputs ``x`` (``[n, …]``)."""
    __call__ = forward

class NoiseStats:
    """Per-sample gradient statistics at given weights (:func:`noise_stats`).

    Attributes:
        loss: the mean loss ``(1/n) Σ ‖f(x_i) − y_i‖²``.
        n: the number of samples.
        mean: the mean gradient ``∇L`` as a state dict.
        variance: the per-parameter variance ``diag Σ`` (weight ``1/n``) as a state dict.
        rows: one dict per catalog symmetry: ``name``, ``kind``, ``C`` (the charge ``θᵀAθ``),
            ``tr_a_sigma`` (``Tr[AΣ]``), ``tr_a_sigma_pos`` (``Tr[A₊Σ] ≥ 0``, the noise pushing C
            up), ``tr_a_sigma_neg`` (``Tr[A₋Σ] ≤ 0``), ``grad_quad`` (``∇LᵀA∇L``).
    """
    loss: float
    n: int
    mean: dict[str, np.ndarray]
    variance: dict[str, np.ndarray]
    rows: list[dict[str, Any]]
    def __init__(self, model: Model, raw: Mapping[str, Any]) -> None: ...
    @property
    def columns(self) -> dict[str, np.ndarray]:
        """:attr:`rows` as a dict of arrays (one entry per key)."""
    @property
    def tr_a_sigma(self) -> dict[str, float]:
        """Symmetry name → ``Tr[AΣ]``."""

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
    report: dict[str, Any]
    rows: list[dict[str, Any]]
    rebalanced: dict[str, np.ndarray]
    def __init__(self, model: Model, json_text: str, table: str, theta: bytes) -> None: ...
    @property
    def columns(self) -> dict[str, np.ndarray]:
        """:attr:`rows` as a dict of arrays (one entry per key)."""
    @property
    def families(self) -> list[dict[str, Any]]:
        """The matrix families' balances (reported, not applied)."""
    @property
    def loss_before(self) -> float:
        """The mean loss at the given weights."""
    @property
    def loss_after(self) -> float:
        """The mean loss at the rebalanced weights (equal up to rounding)."""
    @property
    def totals(self) -> dict[str, Any]:
        """Sums over the applied rows before and after: ``applied``, ``imbalance_before``,
        ``imbalance_after`` (``Σ_k |Tr[A_kΣ]|``), ``noise_before``, ``noise_after``,
        ``drift_before``, ``drift_after``."""

class Hessian:
    """The Hessian ``H = ∇²L(θ)`` of the mean loss ``(1/n) Σ ‖f(x_i) − y_i‖²`` (no ½, no weight
    decay) at given weights, as an operator: exact products (no finite differences), its trace and
    its extreme eigenvalues. Made by :func:`hessian`."""
    def __init__(self, model: Model, inner: Any) -> None: ...
    @property
    def dim(self) -> int:
        """The number of parameters P (H is P × P)."""
    def hvp(self, v: ArrayLike | Params) -> Any:
        """The product ``Hv``: ``v`` a flat vector of P values in layout order (returns one), or a
        state dict (returns one)."""
    def trace(self, max_exact: int = 512, probes: int = 32, seed: int = 0) -> float:
        """``Tr H``: exact (P products) when ``P ≤ max_exact``, else Hutchinson's estimate with
        ``probes`` Rademacher vectors drawn from ``seed`` (its standard error is
        :meth:`trace_estimate`'s)."""
    def trace_estimate(self, max_exact: int = 512, probes: int = 32, seed: int = 0) -> dict[str, Any]:
        """The trace with how it was obtained: ``estimate``, ``std_error`` (0 when exact),
        ``exact``, ``products``."""
    def top_eigenvalues(self, k: int = 1, which: str = 'largest', tol: float = 1e-06, max_iter: int = 80, seed: int = 0) -> np.ndarray:
        '''The ``k`` largest (``which="largest"``, descending) or smallest (``"smallest"``,
        ascending) eigenvalues, by Lanczos with full reorthogonalization from a seeded start. A
        pair has converged when ``‖Hv − λv‖ ≤ tol · |λ|_max``; raises ``ArithmeticError`` if not
        every pair converged within ``max_iter`` products (raise it).'''
    def eigenvalues(self) -> np.ndarray:
        """Every eigenvalue, ascending, from the dense matrix (P products; P ≤ 2048)."""

def noise_stats(model: Any, params: Any, x: ArrayLike, y: ArrayLike, loss: str | None = None) -> NoiseStats:
    """Per-sample gradient statistics at ``params`` on the samples ``(x, y)``.

    ``model`` is a :class:`Model` (or a ``[model]`` dict, or a supported PyTorch module),
    ``params`` a state dict (or the module itself), ``x`` of shape ``[n, …]`` with ``d_in`` values
    per sample and ``y`` of shape ``[n, d_out]`` (or ``[n]`` when ``d_out = 1``). Returns the
    per-parameter means and variances of the gradients and every catalog symmetry's ``Tr[AΣ]``
    split into ``Tr[A₊Σ]`` and ``Tr[A₋Σ]`` (:class:`NoiseStats`); the same numbers as
    ``nequil equilibrium --stats`` and its rows.
    """
def equilibrium(model: Any, params: Any, x: ArrayLike, y: ArrayLike, lr: float, batch_size: int, weight_decay: float = 0.0, discrete: bool = False, loss: str | None = None) -> Equilibrium:
    """The noise equilibrium of every catalog symmetry of ``model`` at ``params`` for SGD with
    learning rate ``lr``, batch size ``batch_size`` and weight decay ``weight_decay`` (the loss
    carrying ``γ‖θ‖²``), on the samples ``(x, y)``: ``nequil equilibrium`` as a function.

    Continuous time solves ``4γC = (η/S) Tr[AΣ]`` on each symmetry's orbit; ``discrete=True`` the
    per-step ``E[ΔC] = 0``. Returns an :class:`Equilibrium`: the command's table (``str``), its
    JSON report, the rows, and the rebalanced weights (same function and loss, balanced noise).
    """
def hessian(model: Any, params: Any, x: ArrayLike, y: ArrayLike, loss: str | None = None) -> Hessian:
    """The Hessian of the mean loss over ``(x, y)`` at ``params`` (no weight decay: add ``2γ`` to
    its eigenvalues for the loss with ``γ‖θ‖²``), as a :class:`Hessian` with ``hvp``, ``trace``
    and ``top_eigenvalues``. The data and weights are checked and copied once."""

class RunResult:
    '''A finished (or stopped) training run (:func:`run`).

    Attributes:
        columns: the log\'s column names, as in ``metrics.csv``.
        metrics: column name → float64 array over the recorded rows.
        params: the final parameters as a state dict (the last completed step\'s if it diverged).
        summary: ``summary.json`` as a dict (``status``, ``steps_done``, ``final_row``, …).
        spec: the spec with every default filled in, as TOML text (``spec.toml``).
        status: ``"ok"``, ``"diverged"`` or ``"failed"``.
        error: the message of a run that stopped early, or ``None``.
    '''
    columns: list[str]
    metrics: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    summary: dict[str, Any]
    spec: str
    status: str
    error: str | None
    def __init__(self, raw: Mapping[str, Any]) -> None: ...
    def __getitem__(self, column: str) -> np.ndarray: ...

def run(spec: Mapping[str, Any] | str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> RunResult:
    '''Trains as a run spec says: ``nequil run`` as a function.

    ``spec`` is the spec as a dict (the TOML file\'s tables: ``{"seed": 0, "model": {...},
    "data": {...}, "train": {...}, "probes": {...}}``; relative data paths are resolved against
    the current directory) or the path of a TOML spec file (relative data paths resolved against
    its directory). With ``out``, the run directory (``spec.toml``, ``metrics.csv``,
    ``final.safetensors``, ``summary.json``) is written as the command writes it. A run that
    diverges is not an exception: its :attr:`RunResult.status` is ``"diverged"`` and its metrics
    stop at the failing step. Bad specs raise ``ValueError`` naming the key.
    '''
def reproduce(names: Sequence[str] | None = None, out: str | os.PathLike[str] = 'nequil-out', full: bool = False, jobs: int | None = None, fresh: bool = False) -> list[dict[str, Any]]:
    """Re-runs the paper's experiments (all, or ``names``; see :func:`experiments`) into ``out``
    as ``nequil reproduce`` does: logs, ``summary.json``, figures (SVG and PNG) per experiment and
    ``out/report.html``. ``full`` runs the larger tier of ``nequil reproduce --full`` (larger sizes,
    more seeds and longer runs than the quick default; slower); the paper's own settings
    (``nequil reproduce --paper``) are the command's only. ``jobs`` worker threads (default: all
    cores). With ``full``, finished runs are recorded in
    ``out/<experiment>/runs/`` and loaded by the next call instead of run again (an interrupted
    call resumes); ``fresh`` deletes those records first. Returns each experiment's summary
    (``name``, ``passed``, ``failed``, ``checks``, …)."""
def experiments() -> list[dict[str, str]]:
    """The experiments of :func:`reproduce`: ``name``, ``title`` and ``claim`` of each."""
def simd() -> dict[str, Any]:
    """The SIMD kernels in use (``active``) and those this CPU supports (``supported``); chosen
    at import, forced with the ``NEQUIL_SIMD`` environment variable."""
