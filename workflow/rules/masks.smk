# Stage 3: the instance label map of each single target image (SAM, or superpixels offline), computed once.
# Stand-in runs (run.standins) compute only the first and reuse it for the others (masks_inputs).


rule masks:
    input:
        unpack(masks_inputs),
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
        reuse=lambda wc, input: f"--reuse-labels {input.reuse}" if "reuse" in input.keys() else "",
    shell:
        "OMP_NUM_THREADS={threads} python -m ioda masks --pool {params.pool:q} --index {wildcards.index} "
        "--out {output.labels} {params.how} {params.reuse} > {log} 2>&1"
