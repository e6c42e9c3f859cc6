# Helpers shared by all rules. The run list and file layout come from ioda.plan, the same code the
# report commands use, so the workflow and the tables never disagree on which runs exist.
# Rules run `python -m ioda ...` rather than the `ioda` script: that works from a fresh clone (the
# repository root is the working directory) as well as with the package installed.
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

from snakemake.exceptions import WorkflowError

from ioda.config import validate as ioda_validate
from ioda.errors import IodaError
from ioda.files import read_yaml
from ioda.protocol import get_protocol
from ioda.adapt.settings import cell_json
from ioda.adapt.variants import VARIANTS
from ioda.plan import Plan, Run

try:
    # The one validation: the params schema (workflow/schemas/config.schema.yaml links to it), defaults filled
    # in, a one-line message naming the key; then the cross-checks a JSON schema cannot express (a table naming
    # an unknown task, ...), in Plan. Each config file is read once more by ioda's YAML reader first: Snakemake's
    # keeps the last of a key given twice, ioda's refuses it, naming the key.
    for path in workflow.configfiles:
        if not str(path).endswith(".json"):
            read_yaml(path)
    ioda_validate(config, "config")
    PLAN = Plan(config)
except IodaError as err:
    raise WorkflowError(str(err))

DATA = str(PLAN.data)
RES = str(PLAN.results)
SCALE = PLAN.scale
DEVICE = config["run"]["device"]
THREADS = config["run"]["threads"]
# The `gpu` resource serialises GPU jobs (profiles/default sets gpu: 1). On a CPU-only machine the jobs
# must not be serialised, so they claim no gpu there ("auto" looks for the NVIDIA driver's tool, cheaply).
GPU = 0 if DEVICE == "cpu" or (DEVICE == "auto" and not shutil.which("nvidia-smi")) else 1
# Every rule's software (with --use-conda; otherwise the current environment, e.g. the venv, runs them).
CONDA_ENV = "../envs/ioda.yaml"
# The report commands read the config as this run sees it (configfile + --config overrides), validated and
# with defaults filled in, from this file (rule effective_config).
EFFECTIVE_CONFIG = f"{RES}/config.json"


def exactly(names):
    """A wildcard constraint matching exactly these names ("(?!)" matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


# Variants with one run per target image (img0, img1, ...), and those with one run per cell.
IMAGE_RUN_VARIANTS = [n for n, v in VARIANTS.items() if v.spec.runs == "image"]
CELL_RUN_VARIANTS = [n for n, v in VARIANTS.items() if v.spec.runs != "image"]


def image_run_counts():
    """{number of target images: tasks with that many}: one adapt rule per count (rules/adapt.smk)."""
    counts = {}
    for name, t in PLAN.tasks.items():
        counts.setdefault(t["n_images"], []).append(name)
    return counts


def cell_rules(stage, untrained=False):
    """Name, run ids and wildcard constraints of each per-cell job kind of a stage: one per target-image count
    (<stage>_<n>_images) and one per variant with a single run per cell (<stage>_<variant>: the fine-tune's and,
    with untrained=True, the source model's)."""
    specs = [
        (
            f"{stage}_{n}_images",
            [f"img{i}" for i in range(n)],
            {"task": exactly(tasks), "variant": exactly(IMAGE_RUN_VARIANTS)},
        )
        for n, tasks in sorted(image_run_counts().items())
    ]
    for name in CELL_RUN_VARIANTS:
        if VARIANTS[name].trains or untrained:
            specs.append((f"{stage}_{name}", VARIANTS[name].run_ids(1), {"variant": exactly([name])}))
    return specs


PROTOCOL = get_protocol(config["adapt"]["protocol"])


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    backbone=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    source=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    task=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    variant=r"[a-z_]+",
    run=r"img[0-9]+|source|all",
    index=r"[0-9]+",


def task_cfg(wc):
    return PLAN.tasks[wc.task]


# ---- file lists for the target rules ----------------------------------------------------------------
def all_manifests():
    return [str(PLAN.manifest(d)) for d in config["datasets"]]


def all_pretrained():
    return [str(PLAN.source_model(b, s)) for b, s in PLAN.pretrained()]


def all_encoders():
    return [str(PLAN.results / "encoder" / "card.json")]


def all_labels():
    return [str(PLAN.labels(d, i)) for d, i in PLAN.masks_needed()]


def all_adapted():
    return [str(PLAN.adapt_dir(r) / "model.safetensors") for r in PLAN.adapt_runs()]


def all_evaluated():
    return [str(PLAN.eval_dir(r) / "summary.json") for r in PLAN.runs()]


def curve_runs():
    """The adapt.json of every run that writes the oracle curve.csv (next to it; not a declared output, since
    a cell's job writes the curves of all its images): the report.curves cell's runs that evaluate along the way."""
    return [
        str(PLAN.adapt_dir(r) / "adapt.json") for r in PLAN.adapt_runs() if PLAN.curve_cell(r) and PLAN.evaluates(r)
    ]


def adapt_jsons():
    return [str(PLAN.adapt_dir(r) / "adapt.json") for r in PLAN.adapt_runs()]


def table_names():
    return sorted(PLAN.tables)


def figure_names():
    names = ["fig1_bars", "fig4_tsne"]
    if config["report"]["visuals"]:
        names.append("fig8_visuals")
    if curve_runs():
        names.append("curves")
    if config["report"]["paired"]:
        names.append("paired")
    return names


# ---- per-rule input/param functions ---------------------------------------------------------------
def source_model(wc):
    return str(PLAN.source_model(wc.backbone, task_cfg(wc)["source"]))


def adapt_inputs(wc):
    t = task_cfg(wc)
    inputs = {
        "model": source_model(wc),
        "source": str(PLAN.manifest(t["source"])),
        "target": str(PLAN.manifest(t["target"])),
    }
    if VARIANTS[wc.variant].needs_labels:
        inputs["labels"] = [str(PLAN.labels(t["target"], r.image_index)) for r in cell_runs(wc)]
    if VARIANTS[wc.variant].direction and PLAN.encoder_trained_here() and PLAN.encoder_weights(wc.variant):
        inputs["encoder"] = str(PLAN.encoder_file())
    return inputs


def eval_models(wc):
    """The models one evaluate job scores: the source model (baseline) or the cell's adapted models."""
    if not VARIANTS[wc.variant].trains:
        return [source_model(wc)]
    return [str(PLAN.adapt_dir(r) / "model.safetensors") for r in cell_runs(wc)]


def eval_save_images(wc):
    """--save-images: one folder per run, '-' where report.save_images keeps none (a function of the wildcards)."""
    runs = cell_runs(wc)
    if not any(PLAN.keeps_images(r) for r in runs):
        return ""
    folders = [str(PLAN.eval_dir(r) / "images") if PLAN.keeps_images(r) else "-" for r in runs]
    return "--save-images " + " ".join(shlex.quote(f) for f in folders)


def pool_dir(dataset):
    """LR folder the single target images of `dataset` come from (the same pool split for every task)."""
    splits = {t["pool_split"] for t in PLAN.tasks.values() if t["target"] == dataset}
    return PLAN.data / dataset / sorted(splits)[0] / f"LR_x{SCALE}"


def spec_option(dataset):
    spec = config["datasets"][dataset].get("spec")
    return f"--spec {shlex.quote(json.dumps(spec, sort_keys=True))}" if spec else ""


def numerics_option():
    """--numerics for adapt and pretrain; none for `auto`, so the commands (and results) of such runs stay as before."""
    mode = config["run"]["numerics"]
    return [] if mode == "auto" else ["--numerics", mode]


def store_dir(source):
    """The packed patch store of a source dataset's training split (rule pack_source)."""
    return f"{DATA}/{source}/{PLAN.source_split(source)}_store_x{SCALE}"


def pretrain_inputs(wc):
    inputs = {"data": str(PLAN.manifest(wc.source))}
    if config["pretrain"]["store"] and not PLAN.uses_official(wc.backbone, wc.source):
        inputs["store"] = store_dir(wc.source)
    return inputs


def pretrain_options(wc):
    bb, p = config["backbones"][wc.backbone], config["pretrain"]
    if PLAN.uses_official(wc.backbone, wc.source):
        opts = ["--weights", bb["weights"]] + (["--sha256", bb["sha256"]] if bb["sha256"] else [])
    else:
        split = PLAN.data / wc.source / PLAN.source_split(wc.source)
        opts = ["--store", store_dir(wc.source), "--workers", THREADS] if p["store"] else ["--data", split]
        opts += ["--seed", config["run"]["seed"]]
        for key in ("steps", "batch_size", "lr_patch", "lr"):  # null: the preset's recipe
            if p[key] is not None:
                opts += [f"--{key.replace('_', '-')}", p[key]]
        opts += (["--resume"] if p["resume"] else []) + numerics_option()
    return " ".join(shlex.quote(str(x)) for x in opts)


def masks_options():
    m = config["masks"]
    opts = ["--source", m["source"]]
    if m["source"] == "superpixel":
        opts += ["--segment-area", m["segment_area"]]
    if m["source"] == "sam":
        opts += ["--sam-model", m["sam_model"], "--device", DEVICE]
        opts += ["--sam-checkpoint", m["sam_checkpoint"]] if m["sam_checkpoint"] else []
        opts += ["--paint", PROTOCOL.paint]  # overlapping SAM masks: the protocol's painting order
        opts += ["--points-per-side", m["points_per_side"]]
    return " ".join(shlex.quote(str(x)) for x in opts)


def cell_runs(wc):
    """The runs of one adapt job: every target image of a backbone x task x variant cell."""
    return [Run(wc.task, wc.backbone, wc.variant, r) for r in PLAN.run_ids(wc.task, wc.variant)]


def adapt_photo(wc):
    """`--pool DIR --index I J ...`: the cell's target images (fine-tune: the first pair of its training split).
    The names are known only once `ioda prepare` has run, so `ioda adapt` picks the files (ioda.imageio)."""
    if VARIANTS[wc.variant].spec.target_train:
        pool, indices = PLAN.split_dir(wc.task, "train") / f"LR_x{SCALE}", [0]
    else:
        pool, indices = pool_dir(task_cfg(wc)["target"]), [r.image_index for r in cell_runs(wc)]
    return " ".join(shlex.quote(str(x)) for x in ("--pool", pool, "--index", *indices))


def adapt_out_dir(wc):
    """Several images: `ioda adapt` writes each into <cell>/img<I>/; one image: into the folder given."""
    runs = cell_runs(wc)
    return str(PLAN.adapt_dir(runs[0]) if len(runs) == 1 else PLAN.adapt_dir(runs[0]).parent)


def adapt_settings(wc):
    """The cell's AdaptSettings values as JSON (ioda.adapt.settings): only what its runs read, so a change to the
    config reruns exactly the runs it steers. A function of the wildcards only: Snakemake does not compare
    params that depend on `input`."""
    return cell_json(config, VARIANTS[wc.variant], evaluates=PLAN.evaluates(cell_runs(wc)[0]))


def encoder_recipe(wc):
    """The encoder.pretrain settings as `ioda pretrain-encoder` flags (a function of the config only)."""
    p = config["encoder"]["pretrain"]
    return " ".join(f"--{k.replace('_', '-')} {p[k]}" for k in ("steps", "batch_size", "bank_size", "seed"))


def adapt_extra(wc):
    """The inputs and options that are no AdaptSettings: the encoder, label maps, prompts, the target's pairs,
    the test split of the oracle curve. Everything that changes a run's result is a param, so Snakemake reruns it."""
    runs, t, enc, variant = cell_runs(wc), task_cfg(wc), config["encoder"], VARIANTS[wc.variant]
    opts = ["--encoder", enc["name"]]
    weights = PLAN.encoder_weights(wc.variant)
    if weights:
        opts += ["--encoder-weights", weights]
    if enc["alpha_weights"] and variant.encoder != "untrained":
        opts += ["--alpha-weights", enc["alpha_weights"]]
    opts += ["--alpha-init", enc["alpha_init"]]
    if variant.needs_labels:
        opts += ["--labels", *(PLAN.labels(t["target"], r.image_index) for r in runs)]
    if variant.guidance == "text" and t["prompts"]:
        opts += ["--prompts", *t["prompts"]]
    if variant.spec.target_train:
        opts += ["--target-train", PLAN.split_dir(wc.task, "train")]
    if config["run"]["stack_runs"] and variant.direction and len(runs) > 1:
        opts += ["--stack"]
    opts += numerics_option()
    # every direction-loss run evaluates along the way when adapt.eval_every > 0 (step 0 included: final and
    # oracle best step); a cell's runs share the variant, so they all evaluate or none does
    if PLAN.evaluates(runs[0]):
        opts += ["--eval-data", PLAN.split_dir(wc.task, "test")]
    return " ".join(shlex.quote(str(x)) for x in opts)


def figure_inputs(wc):
    inputs = {"config": EFFECTIVE_CONFIG}
    if wc.figure == "fig1_bars":
        inputs["cells"] = f"{RES}/metrics/aggregate.csv"
    elif wc.figure == "fig4_tsne":
        task = PLAN.tsne_task()
        target = PLAN.tasks[task]["target"]
        inputs["data"] = str(PLAN.manifest(target))
        inputs["labels"] = str(PLAN.labels(target, 0))
        if PLAN.encoder_trained_here():
            inputs["encoder"] = str(PLAN.encoder_file())
    elif wc.figure == "curves":
        inputs["curves"] = curve_runs()
        # the validated step and the validation task's curves
        inputs["runs"] = f"{RES}/metrics/runs.csv"
        inputs["long"] = f"{RES}/metrics/curves.csv"
    elif wc.figure == "paired":
        inputs["runs"] = f"{RES}/metrics/runs.csv"
        inputs["cells"] = f"{RES}/metrics/aggregate.csv"
    elif wc.figure == "fig8_visuals":
        cell = config["report"]["visuals"]
        inputs["evals"] = [
            str(
                PLAN.eval_dir(Run(cell["task"], cell["backbone"], v, PLAN.run_ids(cell["task"], v)[0])) / "summary.json"
            )
            for v in cell["variants"]
        ]
    return inputs


def record_in_dvc():
    """After a complete run of params.yaml, `dvc commit` records its outputs in DVC's cache and dvc.lock, as
    `dvc repro` does. Why: `dvc exp run` first checks out what dvc.lock records, deleting outputs it cannot
    find in the cache, so the first experiment after a plain `snakemake` would recompute everything, data
    and pre-training included. --no-relink leaves the files (and the mtimes Snakemake compares) as they are.
    Skipped inside a DVC stage (dvc repro records it), for another --configfile, --config overrides or
    partial targets (dvc.lock describes the full run of params.yaml), and outside a git clone with DVC."""
    dag = workflow.dag_settings
    if (
        os.environ.get("DVC_STAGE")
        or workflow.overwrite_configfiles
        or workflow.config_settings.config
        or set(dag.targets) - {"all"}
        or dag.until
        or dag.omit_from
        or not (os.path.isdir(".dvc") and os.path.exists(".git") and os.path.isfile("dvc.yaml"))
    ):
        return
    cmd = [sys.executable, "-m", "dvc", "commit", "--force", "--no-relink", "--quiet"]
    print(f"Recording the outputs in DVC's cache and dvc.lock: {shlex.join(cmd[1:])}", file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(
            "warning: dvc commit failed; run it by hand before `dvc exp run` (which would otherwise "
            f"recompute every stage): {' '.join(done.stderr.split())[:300]}",
            file=sys.stderr,
        )


# ---- stand-in runs (run.standins) --------------------------------------------------------------------
def masks_inputs(wc):
    """The target dataset's manifest; in a stand-in run, every label map but the first also takes the first
    one, which it reuses (`ioda masks --reuse-labels`: SAM vit_h costs minutes per image on a CPU)."""
    inputs = {"data": str(PLAN.manifest(wc.dataset))}
    first = PLAN.masks_needed()[0]
    if config["run"]["standins"] and (wc.dataset, int(wc.index)) != first:
        inputs["reuse"] = str(PLAN.labels(*first))
    return inputs


def preflight():
    """`ioda preflight` on this run's config, in Snakemake's process when the run starts (not on dry runs): a job
    of its own would sit upstream of every job and, rerun on each config change, hide their own changes from
    Snakemake's rerun checks. What is missing stops the run with one line."""
    from ioda.preflight import DEFAULT_TIMINGS, check, summary_line

    timings = json.loads(DEFAULT_TIMINGS.read_text()) if DEFAULT_TIMINGS.is_file() else None
    try:
        print(summary_line(check(config, timings)), flush=True)
    except IodaError as err:
        # one line, as a command's refusal: a WorkflowError here would add Snakemake's traceback of the hook
        print(f"ioda preflight: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1)
