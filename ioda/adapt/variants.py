"""Every row of the paper's ablations as a configuration (a registry), not a code fork.

A variant answers four questions:
- method:    "none" (the source model as is), "direction" (CLIP-space direction loss), "finetune" (supervised L1
             on all target HR pairs: the upper bound of Table 5) or "zssr" (the network trained only on the
             single LR image and its own downscaled copies: Table 6);
- guidance:  how the domain direction dLR is measured: "image" (E(LR_T) - E(LR_S)) or "text"
             (E_text(target prompt) - E_text(source prompt), Table 2);
- reference: what stands for the source SR side of dSR: "sr" (M_S(LR_S), IODA) or "hr" (real source HR, Table 2);
- diversity: the target-distribution expansion of Table 3: a region-range mask kind for Alpha-CLIP
             ("full" = none, "grid", "box", "instance") and whether the MAE-like occlusion mask is applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ioda.errors import IodaError

METHODS = ("none", "direction", "finetune", "zssr")
GUIDANCES = ("image", "text")
REFERENCES = ("sr", "hr")
REGIONS = ("full", "grid", "box", "instance")


@dataclass(frozen=True)
class Variant:
    name: str
    method: str = "direction"
    guidance: str = "image"
    reference: str = "sr"
    region: str = "full"
    occlusion: bool = False
    # Table 2's text-guided row (GTA -> Cityscapes prompts in the paper); configurable per run.
    prompts: tuple[str, str] = field(default=("a photo", "a photo taken with a different camera"))
    description: str = ""

    def __post_init__(self) -> None:
        for key, value, allowed in (
            ("method", self.method, METHODS),
            ("guidance", self.guidance, GUIDANCES),
            ("reference", self.reference, REFERENCES),
            ("region", self.region, REGIONS),
        ):
            if value not in allowed:
                raise IodaError(f"variant {self.name!r}: {key}={value!r} (expected one of {', '.join(allowed)})")

    @property
    def needs_labels(self) -> bool:
        return self.method == "direction" and self.region == "instance"

    @property
    def needs_source(self) -> bool:
        return self.method == "direction"

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("baseline", method="none", description="source model, no adaptation"),
        Variant("image_guided", description="image-guided direction loss, no diversity (Tables 1-3)"),
        Variant("real_hr", reference="hr", description="image-guided with real source HR in dSR (Table 2)"),
        Variant("text_guided", guidance="text", description="text-guided direction (Table 2)"),
        Variant("occlusion", occlusion=True, description="image-guided + occlusion mask (Table 3)"),
        Variant("grid", region="grid", description="image-guided + grid region masks (Table 3)"),
        Variant("box", region="box", description="image-guided + box region masks (Table 3)"),
        Variant("instance", region="instance", description="image-guided + instance region masks (Table 3)"),
        Variant("ioda", region="instance", occlusion=True, description="IODA: occlusion + instance masks"),
        Variant("finetune", method="finetune", description="supervised L1 on all target HR (upper bound, Table 5)"),
        Variant("zssr", method="zssr", description="ZSSR: trained on the single LR image only (Table 6)"),
    )
}


def get_variant(name: str, **overrides) -> Variant:
    if name not in VARIANTS:
        raise IodaError(f"variant {name!r} is not known (expected one of {', '.join(VARIANTS)})")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(VARIANTS[name], **overrides) if overrides else VARIANTS[name]
