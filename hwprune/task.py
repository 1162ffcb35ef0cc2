"""The task contract: what the co-design (budget-driven pruning, compare, explore) needs from a
user's model and data, and nothing about what the data means.

    from hwprune.task import Task
    task = Task(model, train=(x_train, y_train), val=(x_val, y_val), test=(x_test, y_test))
    prune_to_budget(task, BudgetConfig(board="pynq-z2", budget=Budget(latency_us=50)), "design/")

* `model`: a trained float `torch.nn.Module` (Linear, Conv1d/2d, Embedding, BatchNorm after a
  Linear/Conv, ReLU, max pooling, flatten/reshape, residual adds, concatenation; see
  hwprune/quantize/qat.py for what quantizes exactly);
* `example`: one input batch (default: the first training sample), its shape and dtype are the
  hardware's input (float32 features/images, or int64 ids for a model that starts with an
  Embedding);
* `train`, `val`, `test`: each a pair (x, y) of numpy arrays or tensors, or a
  `torch.utils.data.DataLoader` yielding (x, y) batches (iterated once, its samples kept in
  memory); `test` None uses the validation data;
* `loss(outputs, targets) -> scalar tensor`: None is cross-entropy on integer class labels;
* `metric(outputs, targets) -> float` on numpy arrays, higher is better: None is accuracy.

Fine-tuning distils from the dense model (softened outputs) only with the default loss. An
Embedding that reads the model input may have its rows cut (the least frequent ids of the
training data map onto `unknown_id`; `keep_ids` always keep their rows); without an
`unknown_id` its rows are never cut. The text task (`hwprune.text.task.text_task`) is one
instance: token ids, <unk> as the unknown id, <pad> and <unk> kept.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hwprune.errors import HwpruneInputError

log = logging.getLogger(__name__)

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Metric = Callable[[np.ndarray, np.ndarray], float]


def accuracy_metric(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Share of samples whose largest output is the target class."""
    outputs = np.asarray(outputs)
    if len(outputs) == 0:
        return 0.0
    return float(np.mean(np.argmax(outputs.reshape(len(outputs), -1), axis=1) == np.asarray(targets).reshape(-1)))


def split_indices(n: int, seed: int = 0, fractions: tuple[float, float] = (0.8, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """80/10/10 train/validation/test indices from one seeded permutation."""
    perm = np.random.default_rng(seed).permutation(n)
    a = int(round(n * fractions[0]))
    b = a + int(round(n * fractions[1]))
    return perm[:a], perm[a:b], perm[b:]


@dataclass
class TaskData:
    """All samples of a task in one array, its split as index arrays, and its objective."""

    x: np.ndarray
    y: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    batch_size: int = 64
    loss: Loss | None = None  # None: cross-entropy on class labels
    metric: Metric | None = None  # None: accuracy
    unknown_id: int | None = None
    keep_ids: tuple[int, ...] = ()

    def example(self) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.x[:1]))

    def batches(self, idx: np.ndarray, size: int = 256, limit: int | None = None) -> list[torch.Tensor]:
        idx = idx[:limit] if limit is not None else idx
        return [torch.from_numpy(np.ascontiguousarray(self.x[idx[i:i + size]])) for i in range(0, len(idx), size)]

    @property
    def classification(self) -> bool:
        return self.loss is None

    def loss_fn(self) -> Loss:
        return self.loss or torch.nn.functional.cross_entropy

    def target(self, y: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(y))
        return t.long() if self.loss is None else t

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        return float((self.metric or accuracy_metric)(np.asarray(outputs), np.asarray(targets)))


def _outputs(model: torch.nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            y = model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch])))
            outs.append(getattr(y, "value", y).detach().cpu().numpy())  # a Brevitas QuantTensor
    return np.concatenate(outs) if outs else np.zeros((0,))


def model_outputs(model: torch.nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """The model's outputs on a batch-first array, in eval mode, as numpy."""
    return _outputs(model, x, batch)


def _pair(data: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) arrays from a pair of arrays/tensors or a DataLoader of (x, y) batches."""
    if isinstance(data, torch.utils.data.DataLoader):
        xs, ys = [], []
        for batch in data:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise HwpruneInputError(f"{what}: the DataLoader must yield (x, y) batches")
            xs.append(np.asarray(batch[0].detach().cpu() if isinstance(batch[0], torch.Tensor) else batch[0]))
            ys.append(np.asarray(batch[1].detach().cpu() if isinstance(batch[1], torch.Tensor) else batch[1]))
        if not xs:
            raise HwpruneInputError(f"{what}: the DataLoader yielded no batch")
        return np.concatenate(xs), np.concatenate(ys)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise HwpruneInputError(f"{what}: expected (x, y) arrays or a DataLoader, got {type(data).__name__}")
    x, y = (np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for v in data)
    return x, y


def _normal_x(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    if x.dtype.kind in "iub":
        return x.astype(np.int64, copy=False)
    raise HwpruneInputError(f"{what}: x has dtype {x.dtype}; expected numbers (float32 features or int64 ids)")


@dataclass
class Task:
    """A user's trained model and data (module doc)."""

    model: torch.nn.Module
    train: Any
    val: Any
    test: Any = None
    example: Any = None
    loss: Loss | None = None
    metric: Metric | None = None
    batch_size: int = 64
    name: str = "model"
    unknown_id: int | None = None
    keep_ids: tuple[int, ...] = ()
    rewind_state: dict[str, torch.Tensor] | None = None
    # Where the model and data came from (recorded in reports).
    source: dict[str, Any] = field(default_factory=dict)
    _data: TaskData | None = field(default=None, repr=False)

    @classmethod
    def from_split(cls, model: torch.nn.Module, x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray,
                   test: np.ndarray, **kw: Any) -> "Task":
        """A task whose samples are one array, split by index arrays."""
        t = cls(model, None, None, **kw)
        t._data = TaskData(_normal_x(np.asarray(x), "data"), np.asarray(y), np.asarray(train), np.asarray(val),
                           np.asarray(test), kw.get("batch_size", 64), kw.get("loss"), kw.get("metric"),
                           kw.get("unknown_id"), tuple(kw.get("keep_ids", ())))
        return t

    def data(self) -> TaskData:
        if self._data is None:
            parts = [("train", self.train), ("val", self.val), ("test", self.test if self.test is not None else self.val)]
            xs, ys = [], []
            for name, d in parts:
                x, y = _pair(d, name)
                if len(x) != len(y):
                    raise HwpruneInputError(f"{name}: x has {len(x)} samples but y has {len(y)}")
                if len(x) == 0:
                    raise HwpruneInputError(f"{name}: no samples")
                xs.append(_normal_x(x, name))
                ys.append(y)
            shapes = {x.shape[1:] for x in xs}
            if len(shapes) != 1:
                raise HwpruneInputError(f"the splits' samples differ in shape: {sorted(shapes)}")
            n = [len(x) for x in xs]
            idx = np.arange(sum(n))
            self._data = TaskData(np.concatenate(xs), np.concatenate(ys), idx[:n[0]], idx[n[0]:n[0] + n[1]],
                                  idx[n[0] + n[1]:], self.batch_size, self.loss, self.metric, self.unknown_id,
                                  tuple(self.keep_ids))
        return self._data

    def example_input(self) -> torch.Tensor:
        if self.example is not None:
            x = self.example if isinstance(self.example, torch.Tensor) else torch.as_tensor(np.asarray(self.example))
            return x.float() if x.is_floating_point() else x.long()
        return self.data().example()


# --------------------------------------------------------------------------- FILE.py:FUNCTION + data.npz

def is_callable_spec(text: str) -> bool:
    """True for `FILE.py:FUNCTION` (or `FILE.py`) rather than a model directory or ONNX file."""
    head = text.rsplit(":", 1)[0] if ":" in text else text
    return head.endswith(".py")


def load_callable_model(spec: str, weights: str | None = None) -> torch.nn.Module:
    """Import FILE.py, call FUNCTION() (no arguments), check it returns an nn.Module, load
    `weights` (a state dict saved with torch.save) into it. Every failure is one line."""
    path_s, _, func = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not func:
        raise HwpruneInputError(f"{spec}: give the function too, as FILE.py:FUNCTION (a function returning the "
                                "trained torch.nn.Module)")
    path = Path(path_s)
    if not path.is_file():
        raise HwpruneInputError(f"{path} does not exist (expected FILE.py:FUNCTION)")
    name = f"hwprune_user_{abs(hash(str(path.resolve())))}"
    try:
        mspec = importlib.util.spec_from_file_location(name, path)
        assert mspec is not None and mspec.loader is not None
        module = importlib.util.module_from_spec(mspec)
        sys.path.insert(0, str(path.resolve().parent))
        try:
            mspec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.resolve().parent))
    except Exception as e:
        raise HwpruneInputError(f"{path} failed to import ({type(e).__name__}: {_first_line(e)})") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == name)
        raise HwpruneInputError(f"{path} has no function {func!r}" + (f"; it defines: {', '.join(defined)}" if defined else ""))
    try:
        model = fn()
    except Exception as e:
        raise HwpruneInputError(f"{path}:{func}() raised {type(e).__name__}: {_first_line(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise HwpruneInputError(f"{path}:{func}() returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        wp = Path(weights)
        if not wp.is_file():
            raise HwpruneInputError(f"--weights {wp} does not exist")
        try:
            state = torch.load(wp, map_location="cpu", weights_only=True)
        except Exception as e:
            raise HwpruneInputError(f"--weights {wp} is not a state dict saved with torch.save ({type(e).__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise HwpruneInputError(f"--weights {wp} holds a {type(state).__name__}, not a state dict")
        try:
            model.load_state_dict(state)
        except Exception as e:
            raise HwpruneInputError(f"--weights {wp} do not load into {path}:{func}() ({_first_line(e)[:200]})") from None
    return model.eval()


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else ""


NPZ_KEYS = "x and y (split 80/10/10 by --seed), or x_train, y_train, x_val, y_val (and optionally x_test, y_test)"


def load_npz(path: str | Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{train, val, test: (x, y)} from an .npz archive (NPZ_KEYS), checked: numeric x with one
    per-sample shape, integer class labels y, as many labels as samples."""
    p = Path(path)
    if not p.is_file():
        raise HwpruneInputError(f"--data {p} does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise HwpruneInputError(f"--data {p} is not a readable .npz archive (save it with numpy.savez; "
                                f"{type(e).__name__})") from None
    keys = set(arrays)
    if {"x_train", "y_train", "x_val", "y_val"} <= keys:
        splits = {"train": ("x_train", "y_train"), "val": ("x_val", "y_val")}
        if ("x_test" in keys) != ("y_test" in keys):
            raise HwpruneInputError(f"--data {p}: give both x_test and y_test, or neither")
        if "x_test" in keys:
            splits["test"] = ("x_test", "y_test")
        out = {s: (arrays[a], arrays[b]) for s, (a, b) in splits.items()}
    elif {"x", "y"} <= keys:
        x, y = arrays["x"], arrays["y"]
        _check_xy(x, y, p, "x", "y")
        if len(x) < 3:
            raise HwpruneInputError(f"--data {p}: {len(x)} samples cannot be split into train/validation/test")
        tr, va, te = split_indices(len(x), seed)
        out = {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": (x[te], y[te])}
    else:
        raise HwpruneInputError(f"--data {p} holds {', '.join(sorted(keys)) or 'no arrays'}; expected {NPZ_KEYS}")
    for s, (x, y) in out.items():
        _check_xy(x, y, p, f"x_{s}", f"y_{s}")
    shapes = {x.shape[1:] for x, _ in out.values()}
    if len(shapes) != 1:
        raise HwpruneInputError(f"--data {p}: the splits' samples differ in shape: {', '.join(str(s) for s in sorted(shapes))}")
    return out


def _check_xy(x: np.ndarray, y: np.ndarray, p: Path, xn: str, yn: str) -> None:
    if x.dtype.kind not in "fiub" or x.ndim < 2:
        raise HwpruneInputError(f"--data {p}: {xn} has shape {x.shape} and dtype {x.dtype}; expected a numeric array "
                                "with the samples first, e.g. (N, features) or (N, channels, height, width)")
    if y.dtype.kind not in "iub" or y.ndim != 1:
        raise HwpruneInputError(f"--data {p}: {yn} has shape {y.shape} and dtype {y.dtype}; expected integer class labels "
                                "of shape (N,)")
    if len(x) != len(y):
        raise HwpruneInputError(f"--data {p}: {xn} has {len(x)} samples but {yn} has {len(y)}")
    if len(x) == 0:
        raise HwpruneInputError(f"--data {p}: {xn} has no samples")


def check_classifier(model: torch.nn.Module, data: TaskData, what: str = "the model") -> int:
    """Run the model on two samples: it must accept them and output (N, classes) covering every
    label. Returns the number of classes."""
    x = data.x[:2]
    try:
        with torch.no_grad():
            model.eval()
            out = model(torch.from_numpy(np.ascontiguousarray(x)))
    except Exception as e:
        hint = " (integer x feeds an Embedding; convert features to float32)" if x.dtype.kind == "i" else ""
        raise HwpruneInputError(f"{what} does not accept inputs of shape (N, {', '.join(map(str, x.shape[1:]))}) and dtype "
                                f"{x.dtype}{hint}: {type(e).__name__}: {_first_line(e)[:160]}") from None
    out = getattr(out, "value", out)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(x):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise HwpruneInputError(f"{what} returns {shape}; the default loss and metric need class scores of shape "
                                "(N, classes)")
    classes = int(out.shape[1])
    lo, hi = int(data.y.min()), int(data.y.max())
    if lo < 0 or hi >= classes:
        raise HwpruneInputError(f"labels outside the classifier's range: y holds {lo}..{hi} but {what} outputs "
                                f"{classes} classes (0..{classes - 1})")
    return classes


@dataclass(frozen=True)
class TaskSource:
    """A picklable recipe for a task (worker processes of `explore` load their own copy):
    a model directory from `hwprune train`, or FILE.py:FUNCTION with --weights and --data."""

    model: str
    weights: str | None = None
    data: str | None = None
    seed: int = 0
    batch_size: int = 64

    def load(self) -> Task:
        if is_callable_spec(self.model):
            if self.data is None:
                raise HwpruneInputError(f"{self.model}: a model from FILE.py:FUNCTION needs --data FILE.npz ({NPZ_KEYS})")
            if not str(self.data).endswith(".npz"):
                raise HwpruneInputError(f"--data {self.data}: a model from FILE.py:FUNCTION takes an .npz archive "
                                        f"({NPZ_KEYS}); CSV/TSV text data are for hwprune train")
            splits = load_npz(self.data, self.seed)
            model = load_callable_model(self.model, self.weights)
            task = Task(model, splits["train"], splits["val"], splits.get("test"), batch_size=self.batch_size,
                        name=Path(self.model.rpartition(":")[0]).stem,
                        source=dict(model=self.model, weights=self.weights, data=self.data, seed=self.seed))
            check_classifier(model, task.data(), self.model)
            return task
        if self.weights is not None or self.data is not None:
            raise HwpruneInputError(f"--weights/--data are for a model given as FILE.py:FUNCTION; {self.model} is a model "
                                    "directory that holds its weights and data")
        from hwprune.text.task import text_task
        from hwprune.text.train import load_model_dir

        return text_task(load_model_dir(self.model))
