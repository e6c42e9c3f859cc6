"""Instance label maps (SAM or superpixels), region-range masks for Alpha-CLIP, and occlusion masks."""

from ioda.masks.labelmap import masks_to_label_map, relabel
from ioda.masks.labels import cached_label_map, compute_label_map, label_meta, load_label_map, save_label_map
from ioda.masks.occlusion import maybe_occlusion, occlusion_keep_mask
from ioda.masks.regions import REGION_SAMPLERS, instance_threshold, sample_region, upsample_mask

__all__ = ["cached_label_map", "compute_label_map", "label_meta", "load_label_map", "masks_to_label_map", "relabel",
           "save_label_map", "maybe_occlusion", "occlusion_keep_mask", "REGION_SAMPLERS", "instance_threshold",
           "sample_region", "upsample_mask"]
