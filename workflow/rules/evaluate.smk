# Stage 5: PSNR/SSIM (Y channel, border = scale) of every adapted model, and of the source model (baseline),
# on the whole target test split.


rule evaluate:
    input:
        model=eval_model,
        data=lambda wc: str(PLAN.manifest(task_cfg(wc)["target"])),
    output:
        per_image=f"{RES}/eval/{{backbone}}/{{task}}/{{variant}}/{{run}}/per_image.csv",
        summary=f"{RES}/eval/{{backbone}}/{{task}}/{{variant}}/{{run}}/summary.json",
        images=directory(f"{RES}/eval/{{backbone}}/{{task}}/{{variant}}/{{run}}/images"),
    log:
        "logs/evaluate/{backbone}/{task}/{variant}/{run}.log",
    benchmark:
        "logs/benchmarks/evaluate/{backbone}/{task}/{variant}/{run}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    params:
        test=lambda wc: str(PLAN.split_dir(wc.task, "test")),
        save=lambda wc, output: f"--save-images {output.images}" if PLAN.keeps_images(run_of(wc)) else "",
        device=DEVICE,
        crop_hr="--crop-hr" if PROTOCOL.eval_crop_hr else "",
    shell:
        "OMP_NUM_THREADS={threads} python -m ioda evaluate --model {input.model} --data {params.test} "
        "--out-csv {output.per_image} --out-json {output.summary} {params.save} {params.crop_hr} --device {params.device} "
        "> {log} 2>&1 && mkdir -p {output.images}"
