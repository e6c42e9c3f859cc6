"""The command line of `ioda adapt` (its flags and their help; ioda.adapt.cli runs them)."""

from __future__ import annotations

import argparse

from ioda.adapt.variants import IODA, VARIANTS
from ioda.config import defaults, schema
from ioda.protocol import PROTOCOLS
from ioda.tiles import AUTO_TILE, AUTO_TILE_PIXELS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ioda adapt",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("photo", nargs="?", help="the ONE low-resolution target photo (PNG/JPEG/...); its HR is never needed")
    p.add_argument("--pool", help="instead of PHOTO: take the photo from this folder of images, the --index-th "
                   "by sorted name (how the workflow names a run's target image)")
    p.add_argument("--index", type=int, nargs="+",
                   help="with --pool: which image, from 0 (default 0); several: each adapted in turn, with the "
                   "model, encoder and source pool loaded once, into --out-dir/img<I>/ (each equal to a run of its own)")
    p.add_argument("--model", required=True, help="pretrained SR checkpoint (.pth/.safetensors, any spandrel arch) "
                   "or registered weights (craft_x4, ditn_real_x4; see ioda prepare --list)")
    p.add_argument("--preset", help="expected backbone preset (e.g. safmn_l); a mismatching checkpoint is refused")
    p.add_argument("--out-dir", required=True, help="folder for the adapted weights, sr.png and logs")
    p.add_argument("--variant", default=IODA, choices=sorted(VARIANTS), help=f"method / ablation row (default: {IODA})")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="authors: their released code exactly (loss weight, CLIP input, soft alpha, label-0 "
                   "instances, eroded HR masks, unmasked SR, fp16 CLIP, eval every 10 steps); paper: the paper's "
                   "text and our documented choices (default from --settings: authors for paper, paper for cpu; "
                   "see docs/method.md)")
    p.add_argument("--loss", choices=["direction", "direction_lrsim"],
                   help="override the protocol's loss: the paper's direction loss, or the authors' code's "
                   "LR-similarity-weighted form")
    p.add_argument("--prompts", nargs=2, metavar=("SOURCE", "TARGET"), help="text-guided variant: the two prompts")
    p.add_argument("--source-data", help="source-domain split folder (LR_x<scale>/, and HR/ for real_hr); "
                   "default: clean MATLAB-bicubic LR of the photos bundled with scikit-image")
    p.add_argument("--labels", nargs="+", help="instance label map of the photo (.npz from `ioda masks`); computed with "
                   "--mask-source when the variant needs one and none is given")
    p.add_argument("--mask-source", default="superpixel", choices=["superpixel", "sam"],
                   help="instance source when --labels is not given: SLIC superpixels (offline) or SAM")
    p.add_argument("--sam-model", default="vit_h", choices=["vit_b", "vit_l", "vit_h"],
                   help="SAM size for --mask-source sam (the paper: vit_h)")
    p.add_argument("--sam-checkpoint", help="SAM checkpoint file for --mask-source sam (e.g. sam_vit_h_4b8939.pth)")
    p.add_argument("--target-train", help="finetune variant only: a target split with HR/ and LR_x<scale>/")
    p.add_argument("--encoder", default="auto", help="image encoder of the loss: ViT-B-16-quickgelu (Alpha-CLIP), "
                   "'tiny' (a small CLIP, untrained without weights), 'degradation' (the CNN of `ioda pretrain-encoder`"
                   "; untrained without --encoder-weights) or 'auto' (ViT-B-16 with OpenAI weights if they are in the "
                   "local cache, else tiny, with a warning)")
    p.add_argument("--encoder-weights", help="encoder weights: 'openai' or a local CLIP state-dict file; for "
                   "'degradation' a .safetensors file of `ioda pretrain-encoder`")
    p.add_argument("--alpha-weights", help="released Alpha-CLIP visual checkpoint (e.g. clip_b16_grit+mim_fultune_4xe.pth)")
    p.add_argument("--alpha-init", default="zero", choices=["zero", "random"],
                   help="alpha conv without --alpha-weights: zero (= plain CLIP, default) or seeded random "
                   "(only sensible for an untrained encoder)")
    p.add_argument("--clip-input", choices=["unit", "gan_quirk"],
                   help="override the protocol's CLIP image range: unit ([0,1]; paper) or gan_quirk (the authors' "
                   "[-1,1] un-normalisation)")
    p.add_argument("--clip-antialias", action=argparse.BooleanOptionalAction, default=None,
                   help="antialias the tensor resizes into CLIP (torchvision's default since 0.17, off before; the "
                   "authors' version is unknown; default from --settings: on)")
    p.add_argument("--settings", default="auto", choices=["auto", "paper", "cpu"],
                   help="where unset flags come from: paper (config/paper.yaml: 1500 steps, batch 2, LR patch 128) or "
                   "cpu (the params schema's defaults: 200 steps, LR patch 48); auto = paper on CUDA")
    p.add_argument("--settings-json", metavar="JSON",
                   help="instead of --settings: these settings (AdaptSettings fields; what the workflow passes: the "
                   "cell's settings, resolved from its config by ioda.adapt.settings); flags given still override")
    p.add_argument("--steps", type=int, help="number of Adam steps (fixed budget; default from --settings, "
                   "adapt.steps, or adapt.finetune_steps / adapt.zssr_steps for those baselines)")
    p.add_argument("--batch-size", type=int, help="samples per step (default from --settings; the paper: 2)")
    p.add_argument("--lr-patch", type=int, help="LR crop size (HR crop = scale x this)")
    p.add_argument("--lr", type=float, help="learning rate (Adam)")
    p.add_argument("--baseline-lr", type=float,
                   help="learning rate of the finetune / zssr baselines (default from --settings: adapt.baseline_lr)")
    p.add_argument("--betas", type=float, nargs=2, help="Adam betas (default from --settings: the authors' 0, 0.99**0.8)")
    p.add_argument("--occlusion-p", type=float, help="occlusion variants: probability of masking a sample")
    p.add_argument("--occlusion-cell", type=int, help="occlusion variants: cell size in LR px")
    p.add_argument("--occlusion-cell-p", type=float, help="occlusion variants: probability of zeroing a cell "
                   "(the three default from --settings: adapt.occlusion)")
    p.add_argument("--seed", type=int, help="seed of crops, masks and init (same seed, same result; default from "
                   "--settings: run.seed)")
    p.add_argument("--eval-data", help="target test split for the oracle PSNR-vs-step curve")
    p.add_argument("--eval-every", type=int, help="evaluate on --eval-data every N steps, step 0 included "
                   "(0: never; default from --settings: 10 for paper, as the authors)")
    p.add_argument("--eval-batch", type=int, help="test images per SR forward when evaluating (default from --settings)")
    p.add_argument("--tile", type=int, help="tile size (LR px) for super-resolving the photo; 0 = whole photo in one "
                   f"pass; default: whole up to {AUTO_TILE_PIXELS} px, tiles of {AUTO_TILE} px above (bounded memory)")
    p.add_argument("--no-sr", action="store_true", help="do not write sr.png")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (can help on CUDA)")
    p.add_argument("--numerics", choices=schema()["properties"]["run"]["properties"]["numerics"]["enum"],
                   default=defaults("run")["numerics"],
                   help="auto: bf16 autocast on CUDA except under --protocol authors, fp32 on CPU; fp32: the fp32 "
                   "reference; fast: bf16, TF32, channels_last, torch.compile on CUDA (ioda/train/numerics.py)")
    p.add_argument("--resume", action="store_true", help="continue from --out-dir/checkpoint.pt")
    p.add_argument("--stack", action="store_true",
                   help="with several --index: step the images' runs together (one vmap'd forward of their models "
                   "and one CLIP forward per step; direction-loss variants, no --resume); each result equals its "
                   "own run up to float reassociation (~1e-6), not bit for bit")
    p.add_argument("--keep-checkpoint", action="store_true", help="keep checkpoint.pt after success")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--log", help="also log to this file")
    return p
