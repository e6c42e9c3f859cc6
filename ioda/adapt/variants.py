"""Every row of the paper's ablations as a configuration (a registry), not a code fork.

A variant answers four questions:
- method:    an entry of METHODS: "none" (the source model as is), "direction" (CLIP-space direction loss),
             "finetune" (supervised L1 on all target HR pairs: the upper bound of Table 5) or "zssr" (the network
             trained only on the single LR image and its own downscaled copies: Table 6). The method says what
             the workflow and the settings ask: whether it trains, with which loss, which `adapt` keys hold its
             step budget and learning rate, and how many runs a cell has;
- guidance:  how the domain direction dLR is measured: "image" (E(LR_T) - E(LR_S)) or "text"
             (E_text(target prompt) - E_text(source prompt), Table 2);
- reference: what stands for the source SR side of dSR: "sr" (M_S(LR_S), IODA) or "hr" (real source HR, Table 2);
- diversity: the target-distribution expansion of Table 3: a region-range mask kind for Alpha-CLIP
             ("full" = none, "grid", "box", "instance") and whether the MAE-like occlusion mask is applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ioda.errors import IodaError

GUIDANCES = ("image", "text")
REFERENCES = ("sr", "hr")
REGIONS = ("full", "grid", "box", "instance")
ENCODER_STATES = ("configured", "untrained")


@dataclass(frozen=True)
class Method:
    """What a method asks of the workflow and the settings; callers ask this, never the variant's name."""

    name: str
    trains: bool  # False: the source model as is (nothing to adapt, evaluated once)
    supervised: bool  # L1 on LR/HR pairs (the baselines) rather than the direction loss
    steps_key: str | None  # the `adapt` key of its step budget
    lr_key: str | None  # the `adapt` key (dotted) of its learning rate
    runs: str  # "image": one run per target image; "all": one run on all target pairs; "source": the source model
    target_train: bool = False  # trains on the target's HR/LR pairs (--target-train), from the source model
    from_scratch: bool = False  # trains a freshly initialised network on the photo alone (ZSSR)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("none", trains=False, supervised=False, steps_key=None, lr_key=None, runs="source"),
        Method("direction", trains=True, supervised=False, steps_key="steps", lr_key="lr", runs="image"),
        Method("finetune", trains=True, supervised=True, steps_key="finetune_steps", lr_key="baseline_lr.finetune",
               runs="all", target_train=True),
        Method("zssr", trains=True, supervised=True, steps_key="zssr_steps", lr_key="baseline_lr.zssr",
               runs="image", from_scratch=True),
    )
}
RUN_IDS = {"source": "source", "all": "all"}  # run id of the single run of a `source` / `all` method


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
    label: str = ""  # its row in the tables and figures
    table_labels: tuple[tuple[str, str], ...] = ()  # (table, label) where a table names it otherwise
    comparison_label: str = "{backbone} + {label}"  # its row in Table 6 (the comparison with other methods)
    # the config's encoder as configured, or the same architecture without weights (seeded random: the control
    # that tells a trained encoder's effect from what any direction loss does to the network)
    encoder: str = "configured"

    def __post_init__(self) -> None:
        for key, value, allowed in (
            ("method", self.method, tuple(METHODS)),
            ("guidance", self.guidance, GUIDANCES),
            ("reference", self.reference, REFERENCES),
            ("region", self.region, REGIONS),
            ("encoder", self.encoder, ENCODER_STATES),
        ):
            if value not in allowed:
                raise IodaError(f"variant {self.name!r}: {key}={value!r} (expected one of {', '.join(allowed)})")

    @property
    def spec(self) -> Method:
        return METHODS[self.method]

    @property
    def trains(self) -> bool:
        return self.spec.trains

    @property
    def supervised(self) -> bool:
        return self.spec.supervised

    @property
    def direction(self) -> bool:
        """Trained with the CLIP direction loss (an encoder, a source pool; stackable; evaluates along the way)."""
        return self.spec.trains and not self.spec.supervised

    @property
    def steps_key(self) -> str | None:
        return self.spec.steps_key

    @property
    def lr_key(self) -> str | None:
        return self.spec.lr_key

    @property
    def needs_labels(self) -> bool:
        return self.direction and self.region == "instance"

    def run_ids(self, targets: int) -> list[str]:
        """Its runs in a cell of a task with `targets` target images."""
        runs = self.spec.runs
        return [f"img{i}" for i in range(targets)] if runs == "image" else [RUN_IDS[runs]]

    def table_label(self, table: str | None = None) -> str:
        return dict(self.table_labels).get(table, self.label)

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("baseline", method="none", description="source model, no adaptation",
                label="Baseline (source model)", comparison_label="{backbone} (source model)"),
        Variant("image_guided", description="image-guided direction loss, no diversity (Tables 1-3)",
                label="Image-guided", table_labels=(("table3", "Baseline (image-guided, no diversity)"),)),
        Variant("real_hr", reference="hr", description="image-guided with real source HR in dSR (Table 2)",
                label="Real HR"),
        Variant("text_guided", guidance="text", description="text-guided direction (Table 2)", label="Text-guided"),
        Variant("occlusion", occlusion=True, description="image-guided + occlusion mask (Table 3)",
                label="Occlusion"),
        Variant("grid", region="grid", description="image-guided + grid region masks (Table 3)", label="Grid"),
        Variant("box", region="box", description="image-guided + box region masks (Table 3)", label="Box"),
        Variant("instance", region="instance", description="image-guided + instance region masks (Table 3)",
                label="Instance"),
        Variant("ioda", region="instance", occlusion=True, description="IODA: occlusion + instance masks",
                label="IODA (occlusion + instance)", table_labels=(("table2", "Image-guided & SR (IODA)"),),
                comparison_label="{backbone} + IODA"),
        Variant("ioda_untrained", region="instance", occlusion=True, encoder="untrained",
                description="IODA with the encoder's architecture UNTRAINED (seeded random): the control",
                label="IODA, untrained encoder (control)"),
        Variant("finetune", method="finetune", description="supervised L1 on all target HR (upper bound, Table 5)",
                label="Fine-tune (all target HR)"),
        Variant("zssr", method="zssr", description="ZSSR: trained on the single LR image only (Table 6)",
                label="ZSSR", comparison_label="ZSSR"),
    )
}
# The two rows every gain is read between: the source model as is, and the full method.
BASELINE = "baseline"
IODA = "ioda"


def get_variant(name: str, **overrides) -> Variant:
    if name not in VARIANTS:
        raise IodaError(f"variant {name!r} is not known (expected one of {', '.join(VARIANTS)})")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(VARIANTS[name], **overrides) if overrides else VARIANTS[name]
