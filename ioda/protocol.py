"""`adapt.protocol`: the authors' released code exactly (`authors`) or the paper's text (`paper`), one switch.

Every knob the two protocols set differently, with its row in docs/method.md's "Protocols" table (which gives
each its reason). A registry with a `type:`-like key: `get_protocol(name)`. It lives at the package's top level
because both the adaptation (ioda.adapt) and the encoder (ioda.clip) read it.

| row | knob                | authors                                         | paper                                 |
|-----|---------------------|-------------------------------------------------|---------------------------------------|
| a   | loss                | direction_lrsim (cos(E(LR_S),E(LR_T)) weight)   | direction (1 - cos, the paper's form) |
| b   | clip_input, fit     | gan_quirk ((x+1)/2), Resize(S)+CenterCrop(S)    | unit ([0,1]), stretched to SxS        |
| b   | clamp_sr            | False (raw SR output into CLIP)                 | True (clamped to [0,1])               |
| c   | alpha               | soft: Normalize(-1,2), bilinear Resize, Normalize(0.5,0.26): bg 0, fg 1.923 | binary: majority vote, bg -1.923 |
| d   | instance_rule       | authors: >= 1000 px (not scaled), label 0 a candidate | scaled: 1000 px at 128 px, scaled by area, label 0 excluded |
| e   | paint               | sam_order: SAM's order, later on top, min area on the raw mask | largest_first, min area on visible px |
| f   | hr_mask             | bilinear_eq: cv2 bilinear x scale then == 255 (about 2 HR px eroded) | nearest       |
| g   | mask_sr             | False (occlusion zeroes LR only)                | True (SR times the upsampled keep mask)|
| g   | occlusion_cells     | full: only whole 32-px cells can be dropped     | partial: edge cells too               |
| h   | clip_fp16           | True on CUDA (CLIP fp16 as OpenAI CLIP, SR fp32, no autocast) | False: bf16 autocast on CUDA |
| i   | plain_clip_full     | False (Alpha-CLIP with a full mask)             | True (plain CLIP for rows without region masks) |
| l   | eval_crop_hr        | True (HR cropped to LR x scale, BasicSR val)    | False (size mismatch refused)         |

Row j (evaluating every 10 steps, step 0 included) is a setting, adapt.eval_every (config/paper.yaml: 10, as
the authors). Row k (timing) is the same for both: adaptation seconds exclude evaluation, evaluation seconds are separate and
their sum is what the authors' wall clock measured. Row j (which model is scored) is answered by reporting both
the final step and the oracle best step everywhere; the saved model is always the final one.
On CPU, CLIP stays fp32 under `authors` too (fp16 CPU kernels are slow and incomplete); adapt.json says which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ioda.errors import IodaError


@dataclass(frozen=True)
class Protocol:
    name: str
    loss: str
    clip_input: str
    clip_fit: str  # "stretch" | "resize_crop"
    clamp_sr: bool
    alpha: str  # "binary" | "soft"
    instance_rule: str  # "scaled" | "authors"
    paint: str  # "largest_first" | "sam_order"
    hr_mask: str  # "nearest" | "bilinear_eq"
    mask_sr: bool
    occlusion_cells: str  # "partial" | "full"
    clip_fp16: bool
    plain_clip_full: bool
    eval_crop_hr: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def region_opts(self, region: str) -> dict:
        """Options for ioda.masks.regions.sample_region under this protocol."""
        if region == "instance" and self.instance_rule == "authors":
            return {"scale_threshold": False, "include_unlabelled": True}
        return {}


PROTOCOLS: dict[str, Protocol] = {
    "authors": Protocol("authors", loss="direction_lrsim", clip_input="gan_quirk", clip_fit="resize_crop",
                        clamp_sr=False, alpha="soft", instance_rule="authors", paint="sam_order",
                        hr_mask="bilinear_eq", mask_sr=False, occlusion_cells="full", clip_fp16=True,
                        plain_clip_full=False, eval_crop_hr=True),
    "paper": Protocol("paper", loss="direction", clip_input="unit", clip_fit="stretch", clamp_sr=True,
                      alpha="binary", instance_rule="scaled", paint="largest_first", hr_mask="nearest",
                      mask_sr=True, occlusion_cells="partial", clip_fp16=False, plain_clip_full=True,
                      eval_crop_hr=False),
}


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise IodaError(f"protocol {name!r}: unknown (expected one of {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]
