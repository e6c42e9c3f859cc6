# IODA reproduction workflow (Snakemake catalog layout): rules in workflow/rules/<stage>.smk, helpers in
# workflow/rules/common.smk, profiles in workflow/profiles/. Every rule calls the `ioda` CLI.
#   snakemake --cores 2                                         # offline demo (params.yaml)
#   snakemake --profile workflow/profiles/default               # same, with the local profile
#   snakemake --configfile config/paper.yaml --profile workflow/profiles/slurm   # the paper's runs
from snakemake.utils import min_version

min_version("9.0")


# params.yaml is the default; a --configfile (config/paper.yaml, .test/config.yaml) REPLACES it instead of
# being merged into it (a merge would silently keep the demo's datasets, tasks and tables).
if not workflow.overwrite_configfiles:

    configfile: "params.yaml"


# The config is validated against workflow/schemas/config.schema.yaml (defaults filled in) once, in
# workflow/rules/common.smk, by the same code as every `ioda` command: a bad key stops the run in one line.


# `snakemake --report results/report.html`: this page heads the report; each report() output has a caption
# (workflow/report/*.rst) and a category.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/encoder.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/adapt.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Before the first job: free disk, the device's memory for the largest job, no stand-in without run.standins.
onstart:
    preflight()


# dvc.lock and DVC's cache follow a complete plain run, so `dvc exp run` keeps what it did (common.smk)
onsuccess:
    record_in_dvc()


rule all:
    default_target: True
    input:
        f"{RES}/summary.md",
        # asked for by name: no rule reads them, and Snakemake only remakes missing files that something needs
        rules.aggregate.output.runs,
        rules.aggregate.output.metrics,
        rules.aggregate.output.curves,


# Coarser targets (used by the DVC stages in dvc.yaml).
rule data:
    input:
        all_manifests(),


rule pretrained:
    input:
        all_pretrained(),


rule encoder:
    input:
        all_encoders(),


rule adapted:
    input:
        all_labels(),
        all_adapted(),


rule evaluated:
    input:
        all_evaluated(),
