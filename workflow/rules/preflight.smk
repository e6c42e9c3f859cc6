# Stage 0: before the first long job, check free disk for what the run writes, the device's memory for its
# largest job, and that no stand-in input is used without run.standins (ioda preflight). Datasets need it
# (ancient: a rerun of the check never reruns the data), and everything else needs the datasets.


rule preflight:
    input:
        config=EFFECTIVE_CONFIG,
    output:
        f"{RES}/preflight.json",
    log:
        "logs/preflight.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m ioda preflight --config {input.config} --out {output} > {log} 2>&1"
