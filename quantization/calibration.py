"""Post-training calibration: activation ranges of a deploy module on real image patches.

:func:`calibrate` runs ``torch.fx.symbolic_trace(deploy_module)`` through an
``fx.Interpreter`` on the patches, feeds each int8 tensor node's output (see
:mod:`edgesr.quantization.graph`) to an observer, and returns ``{node name: (min, max)}``: the
``activation_ranges`` the QAT model simulates and the converters put into the int8 TFLite
graph. Every range contains 0 (TFLite requires it). Observers, selected by name:

* ``"minmax"``: the observed minimum and maximum;
* ``"percentile"``: the ``100 - p`` and ``p`` percentiles (default p = 99.99) of a sample of
  the values, clipping rare outliers;
* ``"mse"``: the clipping range minimising the mean squared error between the values and
  their int8 fake quantization (:func:`~edgesr.quantization.fake_quant.fake_quant_activation`), found
  by a grid search (common shrink of both ends) refined by coordinate descent on each end.
"""

from __future__ import annotations

import numpy as np
import torch
from edgesr.quantization.fake_quant import MIN_RANGE_WIDTH, fake_quant_activation
from edgesr.quantization.graph import (
    clip_limits,
    observed_nodes,
    quant_plan,
    range_source,
    tensor_nodes,
    trace,
)
from torch import fx, nn

from edgesr.core.errors import EdgesrError


def _with_zero(lo: float, hi: float) -> tuple[float, float]:
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    return lo, max(hi, lo + MIN_RANGE_WIDTH)


class MinMaxObserver:
    """Running minimum and maximum of every value seen."""

    def __init__(self):
        self.lo, self.hi = float("inf"), float("-inf")

    def update(self, x: torch.Tensor) -> None:
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))

    def range(self) -> tuple[float, float]:
        """(min, max) widened to contain 0."""
        if self.lo > self.hi:
            raise EdgesrError("calibration observed no values (no calibration patches?)")
        return _with_zero(self.lo, self.hi)


class _SampleObserver(MinMaxObserver):
    """Min/max plus a seeded uniform sample of at most ``samples_per_batch`` values per update."""

    def __init__(self, samples_per_batch: int = 1 << 17, seed: int = 0):
        super().__init__()
        self.samples_per_batch = samples_per_batch
        self.generator = torch.Generator().manual_seed(seed)
        self.samples: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        super().update(x)
        flat = x.detach().reshape(-1).float()
        if flat.numel() > self.samples_per_batch:
            flat = flat[torch.randint(flat.numel(), (self.samples_per_batch,), generator=self.generator)]
        self.samples.append(flat.clone())

    def values(self) -> torch.Tensor:
        """All sampled values, 1-D float32."""
        return torch.cat(self.samples)


class PercentileObserver(_SampleObserver):
    """Range (P_{100-p}, P_p) of the sampled values; ``percentile`` p in (50, 100]."""

    def __init__(self, percentile: float = 99.99, **kw):
        super().__init__(**kw)
        if not 50.0 < float(percentile) <= 100.0:
            raise EdgesrError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = float(percentile)

    def range(self) -> tuple[float, float]:
        super().range()
        v = self.values().double().numpy()
        lo, hi = np.percentile(v, [100.0 - self.percentile, self.percentile])
        return _with_zero(lo, hi)


class MSEObserver(_SampleObserver):
    """The clipping range with the least mean squared int8 fake-quantization error.

    Search: candidates ``(a * min, a * max)`` for shrink factors ``a`` in ``grid`` steps over
    [0.05, 1]; then coordinate descent from the best: each end in turn tries
    ``end * f`` for f in [0.9, 1.1] (step 0.01), kept inside the observed min/max, until no
    move lowers the error (at most ``rounds`` passes). :meth:`error` is the criterion, public
    so the choice can be checked.
    """

    def __init__(self, grid: int = 40, rounds: int = 8, **kw):
        super().__init__(**kw)
        self.factors = np.linspace(1.0, 0.05, grid)
        self.refine = np.linspace(0.9, 1.1, 21)
        self.rounds = rounds

    def error(self, lo: float, hi: float) -> float:
        """Mean of (fake_quant(v; [lo, hi]) - v)^2 over the sampled values v (float64 mean)."""
        return float(self.errors([(lo, hi)])[0])

    def errors(self, ranges: list[tuple[float, float]], chunk: int = 8) -> np.ndarray:
        """:meth:`error` of each range, evaluated ``chunk`` ranges at a time (broadcast)."""
        v = self.values()[None]
        out = []
        for i in range(0, len(ranges), chunk):
            lo, hi = zip(*(_with_zero(*r) for r in ranges[i : i + chunk]))
            q = fake_quant_activation(v, torch.tensor(lo)[:, None], torch.tensor(hi)[:, None])
            out.append(((q - v).double() ** 2).mean(dim=1).numpy())
        return np.concatenate(out)

    def candidates(self) -> list[tuple[float, float]]:
        """The first-stage candidates: both ends of the min/max range shrunk by each factor."""
        lo, hi = super().range()
        return [(a * lo, a * hi) for a in self.factors]

    def range(self) -> tuple[float, float]:
        bound = super().range()
        cands = self.candidates()
        errs = self.errors(cands)
        best, best_err = cands[int(np.argmin(errs))], float(errs.min())
        for _ in range(self.rounds):
            improved = False
            for end in (1, 0):
                values = np.clip(best[end] * self.refine, bound[0], bound[1])
                cands = [(best[0], float(v)) if end == 1 else (float(v), best[1]) for v in values]
                errs = self.errors(cands)
                if errs.min() < best_err:
                    best, best_err, improved = cands[int(np.argmin(errs))], float(errs.min()), True
            if not improved:
                break
        return _with_zero(*best)


OBSERVERS = {"minmax": MinMaxObserver, "percentile": PercentileObserver, "mse": MSEObserver}
"""Observer classes by the name ``calibrate`` and ``edgesr quantize --observer`` take."""


def make_observer(name: str, **kw):
    """An observer by name; keyword arguments go to its constructor (e.g. ``percentile=99.9``).

    Raises:
        EdgesrError: unknown name or an argument the observer does not take.
    """
    if name not in OBSERVERS:
        raise EdgesrError(f"unknown observer {name!r}; choose one of {', '.join(OBSERVERS)}")
    try:
        return OBSERVERS[name](**kw)
    except TypeError as exc:
        raise EdgesrError(f"observer {name!r}: {exc}") from None


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, observers: dict):
        super().__init__(gm)
        self.observers = observers

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.observers:
            if not (isinstance(out, torch.Tensor) and out.is_floating_point()):
                raise EdgesrError(f"node {n.name!r} ({n.target}) returns {type(out).__name__}, not a float tensor: "
                                  "int8 calibration does not support it")
            self.observers[n.name].update(out)
        return out


def calibrate(deploy_module: nn.Module, patches, observer: str = "minmax", *, batch_size: int = 16,
              **observer_kw) -> dict[str, tuple[float, float]]:
    """Activation ranges of ``deploy_module`` observed on ``patches``.

    Args:
        deploy_module: plain deploy module (after ``collapse()``), float32, fx-traceable.
        patches: float32 (N, C, P, P) model inputs (array or tensor), e.g. from
            :func:`calibration_patches`.
        observer: ``"minmax"``, ``"percentile"`` or ``"mse"``; ``observer_kw`` configure it.
        batch_size: patches per forward pass.
    Returns:
        ``{fx node name: (min, max)}`` for every node that is an int8 tensor in TFLite
        (placeholder included; depth-to-space and the final clip repeat their input's range;
        a conv whose RELU TFLite fuses has no entry, its RELU has). min <= 0 <= max. The
        members of a same-scale cluster (:func:`edgesr.quantization.graph.observed_nodes`) share the
        union of their ranges; a group that ends in the output clamp takes exactly the
        clamp's bounds (:func:`edgesr.quantization.graph.clip_limits`): values beyond them cannot
        reach the output, and on [0, 1] the int8 grid (scale 1/255, zero point -128) is the 8-bit
        grid the output is shown on, so its rounding is the display's own (a narrower range
        would round twice and clip bright pixels, as LSQ QAT did when it learned this range and
        narrowed SESR-M5's below 1 on T91 patches); the input takes the model contract's ``value_range``
        (every valid input representable, none clipped).

    Raises:
        EdgesrError: unknown observer, or no patches.
    """
    x = torch.as_tensor(np.asarray(patches, dtype=np.float32))
    if x.ndim != 4 or x.shape[0] == 0:
        raise EdgesrError(f"calibration needs patches (N, C, P, P) with N > 0, got shape {tuple(x.shape)}")
    gm = trace(deploy_module)
    plan = quant_plan(gm)
    sources = observed_nodes(plan)
    observers = {n: make_observer(observer, **observer_kw) for n in sources}
    recorder = _Recorder(gm, {n: observers[s] for s, members in sources.items() for n in members})
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            recorder.run(x[i : i + batch_size])
    ranges = {n: obs.range() for n, obs in observers.items()}
    contract = getattr(deploy_module, "contract", None)
    for node in gm.graph.nodes:  # the input takes the contract's whole range: no valid input is clipped
        if node.op == "placeholder" and contract is not None and node.name in ranges:
            ranges[node.name] = _with_zero(*contract.value_range)
    for n, (lo, hi) in clip_limits(gm, plan).items():  # the output clamp's range: the display grid
        ranges[n] = _with_zero(lo, hi)
    fixed = {n: p.fixed_range for n, p in plan.items() if p.fixed_range is not None}
    return {n: fixed.get(n) or ranges[range_source(plan, n)] for n in tensor_nodes(plan)}
