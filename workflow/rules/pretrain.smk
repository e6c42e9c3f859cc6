# Stage 2: the source model of each backbone x source dataset: official weights imported when configured,
# else supervised L1 pre-training on the source training split.


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        model=f"{RES}/pretrain/{{backbone}}/{{source}}.safetensors",
    log:
        "logs/pretrain/{backbone}/{source}.log",
    benchmark:
        "logs/benchmarks/pretrain/{backbone}/{source}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=1440,
    params:
        preset=lambda wc: config["backbones"][wc.backbone]["preset"],
        how=lambda wc: pretrain_options(wc),
        device=DEVICE,
    shell:
        "OMP_NUM_THREADS={threads} python -m ioda pretrain --preset {params.preset} --out {output.model} {params.how} "
        "--device {params.device} > {log} 2>&1"


# With pretrain.store: the source split packed once into a memory-mapped patch store (ioda.data.patch_store), so
# pre-training reads patches with DataLoader workers instead of decoding every image into memory.
rule pack_source:
    input:
        data=f"{DATA}/{{source}}/manifest.json",
    output:
        store=directory(f"{DATA}/{{source}}/{{split}}_store_x{SCALE}"),
    log:
        "logs/pack/{source}_{split}.log",
    wildcard_constraints:
        split=r"[A-Za-z0-9-]+",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=600,
    params:
        split=lambda wc: f"{DATA}/{wc.source}/{wc.split}",
        scale=SCALE,
    shell:
        "python -m ioda pack {params.split} --scale {params.scale} --out {output.store} > {log} 2>&1"


# Registered trained weights used as they are (a backbone with `weights: craft_x4` and no preset): no
# pre-training stage, only the pinned file fetched (network or IODA_MIRROR) and verified by its SHA-256.
rule fetch_weights:
    output:
        weights=f"{RES}/weights/{{weights}}.pth",
    log:
        "logs/weights/{weights}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "python -m ioda prepare {wildcards.weights} --out {output.weights} > {log} 2>&1"
