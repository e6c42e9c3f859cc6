# Stage 3: the instance label map of each single target image (SAM, or superpixels offline), computed once.


rule masks:
    input:
        data=f"{DATA}/{{dataset}}/manifest.json",
    output:
        labels=f"{RES}/masks/{{dataset}}/img{{index}}.npz",
    log:
        "logs/masks/{dataset}/img{index}.log",
    benchmark:
        "logs/benchmarks/masks/{dataset}/img{index}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        gpu=GPU if config["masks"]["source"] == "sam" else 0,
        mem_mb=8000,
        runtime=60,
    params:
        pool=lambda wc: pool_dir(wc.dataset),
        how=masks_options(),
    shell:
        "OMP_NUM_THREADS={threads} python -m ioda masks --pool {params.pool:q} --index {wildcards.index} "
        "--out {output.labels} {params.how} > {log} 2>&1"
