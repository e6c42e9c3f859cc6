"""How a training run's networks compute: the fp32 eager reference or the fast path, as one setting.

`run.numerics` in the config, `--numerics` of `ioda adapt` and `ioda pretrain`:

- auto (the default; what runs did before the setting existed): bf16 autocast over the SR network and the encoder
  on CUDA, unless the run keeps the authors' precision (their CLIP in fp16, the SR network in fp32: protocol
  `authors`) or pre-trains (fp32); PyTorch's own TF32 defaults; eager. On a CPU: fp32 eager.
- fp32: the reference: no autocast, TF32 off for matmuls and convolutions, eager (an fp16 CLIP stays fp16).
- fast: on CUDA bf16 autocast over the SR network (and over the encoder unless it is an fp16 CLIP), TF32 for what
  stays fp32, channels_last, torch.compile of the SR network's training forward and of the encoder tower. On a
  CPU it is fp32 eager, bit for bit the same as `auto`: none of it is exact there and autocast/compile do not pay.

Every part can also be set on its own with `Numerics(...)` (e.g. compile or bf16 autocast on a CPU, as the tests
do). The CUDA default stays `auto` until a GPU measurement (benchmarks/gpu_paper.sh) shows `fast` faster than
fp32 and close to it; no GPU has measured it yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ioda.errors import IodaError

MODES = ("auto", "fp32", "fast")
AUTOCAST_DTYPE = torch.bfloat16
_COMPILED_FLAG = "_ioda_compiled"


@dataclass(frozen=True)
class Numerics:
    """The resolved numerics of one run on one device (see the module docstring; `resolve` builds it)."""

    device_type: str = "cpu"
    autocast_sr: bool = False  # bf16 autocast over SR forwards
    autocast_encoder: bool = False  # bf16 autocast over the whole step (encoder and loss too), as `auto` on CUDA
    tf32: bool | None = None  # True: TF32 matmuls/convs; False: IEEE fp32; None: PyTorch's settings untouched
    channels_last: bool = False
    compile_sr: bool = False
    compile_encoder: bool = False
    mode: str = "custom"  # the setting it came from (recorded in reports)

    @classmethod
    def resolve(cls, mode: "str | Numerics", device: torch.device | str, *, fp32_default: bool = False,
                channels_last: bool = False) -> "Numerics":
        """The numerics `mode` means on `device` (a Numerics is taken as it is: parts set by hand).
        fp32_default: `auto` runs in fp32 (the authors' protocol: SR fp32, their fp16 CLIP as it is; supervised
        pre-training), and `fast` leaves the encoder out of autocast (an fp16 CLIP stays fp16).
        channels_last: asked for on its own (--channels-last), in any mode."""
        if isinstance(mode, Numerics):
            return replace(mode, channels_last=mode.channels_last or channels_last)
        if mode not in MODES:
            raise IodaError(f"numerics: unknown {mode!r} (expected one of {', '.join(MODES)})")
        dev = torch.device(device).type
        cuda = dev == "cuda"
        base = cls(device_type=dev, channels_last=channels_last, mode=mode)
        if mode == "auto":
            amp = cuda and not fp32_default
            return replace(base, autocast_sr=amp, autocast_encoder=amp)
        if mode == "fp32":
            return replace(base, tf32=False if cuda else None)
        if not cuda:  # fast on a CPU: fp32 eager, identical to auto
            return base
        return replace(base, autocast_sr=True, autocast_encoder=not fp32_default, tf32=True,
                       channels_last=True, compile_sr=True, compile_encoder=True)

    def to_dict(self) -> dict:
        return asdict(self)

    # -- precision -------------------------------------------------------------------------------------------
    def autocast(self, whole_step: bool = False) -> torch.autocast:
        """bf16 autocast over an SR forward (whole_step=False) or over a whole step, encoder included."""
        on = self.autocast_encoder if whole_step else self.autocast_sr
        return torch.autocast(self.device_type, dtype=AUTOCAST_DTYPE, enabled=on)

    @contextlib.contextmanager
    def precision(self) -> Iterator[None]:
        """TF32 on (or strict IEEE fp32) for matmuls and cuDNN convolutions while the run trains; the previous
        settings come back afterwards. Nothing is touched when tf32 is None (auto, and every mode on a CPU)."""
        if self.tf32 is None or self.device_type != "cuda":
            yield
            return
        mm, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
        before = (mm.fp32_precision, conv.fp32_precision)
        want = "tf32" if self.tf32 else "ieee"
        mm.fp32_precision = conv.fp32_precision = want
        try:
            yield
        finally:
            mm.fp32_precision, conv.fp32_precision = before

    # -- layout and kernels ----------------------------------------------------------------------------------
    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch in this run's memory format (the same tensor when it already is)."""
        return x.contiguous(memory_format=self.memory_format)

    def sr_forward(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """The training forward of an SR network: the module converted to channels_last in place (if set) and,
        with compile_sr, a torch.compile wrapper sharing its parameters. The module itself stays eager, so its
        evaluations on other image sizes and its saved weights are not touched by the compilation."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile_sr else model

    def compile_function(self, fn: Callable) -> Callable:
        """fn compiled when compile_sr is set (e.g. the vmap'd forward of stacked runs), else fn itself."""
        return torch.compile(fn) if self.compile_sr else fn

    def prepare_encoder(self, encoder: nn.Module) -> None:
        """With compile_encoder: the encoder's image tower (`encoder.visual`) compiled IN PLACE (nn.Module.compile:
        weights and state_dict unchanged), once; every user of this encoder object then runs the compiled tower."""
        tower = getattr(encoder, "visual", None)
        if not self.compile_encoder or tower is None or getattr(tower, _COMPILED_FLAG, False):
            return
        tower.compile()
        setattr(tower, _COMPILED_FLAG, True)
