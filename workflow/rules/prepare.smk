# Stage 1: datasets (download/verify or build the offline demo; LR degradation is part of `ioda prepare`).


rule prepare:
    output:
        manifest=f"{DATA}/{{dataset}}/manifest.json",
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "logs/benchmarks/prepare/{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        out=lambda wc: f"{DATA}/{wc.dataset}",
        root=config["run"]["raw_dir"],
        seed=config["run"]["seed"],
        spec=lambda wc: spec_option(wc.dataset),
        standins="--standins" if config["run"]["standins"] else "",
    shell:
        "python -m ioda prepare {wildcards.dataset} --out {params.out} --root {params.root} --seed {params.seed} "
        "{params.spec} {params.standins} > {log} 2>&1"
