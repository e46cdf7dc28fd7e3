# Type stubs of the extension module nequil._core (python/src/lib.rs). Arrays cross as bytes of
# native-endian float64 with their shapes beside them; specs as JSON text. The public API is the
# package `nequil`, which wraps these.
from typing import Any, Dict, List, Optional, Tuple

__version__: str

Arr = Tuple[bytes, List[int]]

class Model:
    """A model built from a ``[model]`` table."""
    @staticmethod
    def from_json(text: str) -> "Model":
        """A model from a ``[model]`` table given as JSON text."""
    @staticmethod
    def from_toml(text: str) -> "Model":
        """A model from TOML text (a run spec or a file holding only ``[model]``)."""
    @staticmethod
    def from_file(path: str) -> "Model":
        """A model from a TOML file, read as ``nequil equilibrium --model`` reads it."""
    def describe(self) -> str:
        """The model in words."""
    @property
    def n_params(self) -> int:
        """The number of parameters P."""
    @property
    def d_in(self) -> int:
        """Values per input sample."""
    @property
    def d_out(self) -> int:
        """Values per output sample."""
    @property
    def d_y(self) -> int:
        """Target values per sample."""
    @property
    def loss(self) -> str:
        """``"mse"`` or ``"cross-entropy"``."""
    def with_loss(self, name: str) -> Model:
        """The same model scored by the loss ``name``."""
    def spec_json(self) -> str:
        """The ``[model]`` table with its defaults, as JSON text."""
    def layout(self) -> List[Tuple[str, List[int]]]:
        """``[(name, shape), …]`` in layout order."""
    def catalog_json(self) -> str:
        """The catalog (symmetries, families, notes, inert parameters) as JSON text."""
    def generators(self) -> List[Tuple[bytes, bool]]:
        """Each symmetry's generator: its diagonal (``True``) or its dense matrix (``False``)."""
    def flatten(self, tensors: List[Tuple[str, List[int], bytes]]) -> bytes:
        """θ in layout order from named tensors, checked."""
    def init(self, seed: int) -> bytes:
        """The initial θ of the ``init`` scheme for ``seed``."""
    def forward(self, theta: bytes, x: bytes, x_shape: List[int]) -> bytes:
        """The outputs ``f(x)``."""

class Hessian:
    """The Hessian of the mean loss at θ on the data."""
    def __init__(self, model: Model, theta: bytes, x: Arr, y: Arr) -> None: ...
    @property
    def dim(self) -> int:
        """P."""
    def hvp(self, v: bytes) -> bytes:
        """``Hv``."""
    def trace(self, max_exact: int, probes: int, seed: int) -> Tuple[float, float, bool, int]:
        """``(estimate, std_error, exact, products)``."""
    def top_eigenvalues(self, k: int, largest: bool, max_iter: int, tol: float, seed: int) -> Tuple[List[float], List[float], bool, int]:
        """``(values, residuals, converged, iterations)`` by Lanczos."""
    def eigenvalues(self) -> List[float]:
        """Every eigenvalue, ascending."""

class ChargeRecorder:
    """The ``[probes.charges]`` instrument called from outside the training loop."""
    def __init__(self, model: Model, charges_json: str, x: Arr, y: Arr, lr: float, batch_size: int, weight_decay: float) -> None: ...
    @property
    def columns(self) -> List[str]:
        """The columns of a row."""
    def record(self, step: int, theta: bytes) -> bytes:
        """One row at θ after ``step`` updates."""

def noise_stats(model: Model, theta: bytes, x: Arr, y: Arr) -> Dict[str, Any]:
    """Gradient statistics and noise balances at θ."""
def equilibrium(model: Model, theta: bytes, x: Arr, y: Arr, lr: float, batch_size: int, weight_decay: float, discrete: bool) -> Tuple[str, str, bytes]:
    """``(json report, table, rebalanced θ)``."""
def run(source: str, kind: str, base: str, out: Optional[str] = None) -> Dict[str, Any]:
    """A run of a spec (JSON text, TOML text or a path)."""
def reproduce(names: List[str], out: str, full: bool, jobs: Optional[int]) -> str:
    """The paper's experiments into ``out``; their summaries as JSON text."""
def experiments() -> List[Tuple[str, str, str]]:
    """``[(name, title, claim), …]``."""
def simd() -> Tuple[str, List[str]]:
    """The active SIMD path and the supported ones."""
def log_csv(columns: List[str], rows: bytes) -> str:
    """A log as ``metrics.csv`` text."""
def _panic_for_tests() -> None:
    """Panics inside a guarded call (the boundary test)."""
