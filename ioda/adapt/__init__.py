"""One-shot domain adaptation: the direction loss, the ablation variants, the trainer and the baselines.

`ioda.adapt.adapt(model, photo, variant=..., settings=..., encoder=...)` is the programmatic entry point."""

from ioda.adapt.api import AdaptResult, adapt, adapt_stacked
from ioda.adapt.settings import AdaptSettings

__all__ = ["AdaptResult", "AdaptSettings", "adapt", "adapt_stacked"]
