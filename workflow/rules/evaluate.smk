# Stage 5: PSNR/SSIM (Y channel, border = scale) of every adapted model, and of the source model (baseline),
# on the whole target test split. One job per backbone x task x variant cell scores all the cell's models in one
# process (rules evaluate_<n>_images, evaluate_baseline for the source model, evaluate_finetune), as adaptation does.


def _evaluate_cell_rule(name, runs, constraints):
    cell = f"{RES}/eval/{{backbone}}/{{task}}/{{variant}}"

    rule:
        name:
            name
        input:
            models=eval_models,
            data=lambda wc: str(PLAN.manifest(task_cfg(wc)["target"])),
        output:
            per_image=[f"{cell}/{r}/per_image.csv" for r in runs],
            summary=[f"{cell}/{r}/summary.json" for r in runs],
            images=[directory(f"{cell}/{r}/images") for r in runs],
        log:
            "logs/evaluate/{backbone}/{task}/{variant}.log",
        benchmark:
            "logs/benchmarks/evaluate/{backbone}/{task}/{variant}.tsv"
        wildcard_constraints:
            **constraints,
        conda:
            CONDA_ENV
        threads: THREADS
        resources:
            gpu=GPU,
            mem_mb=8000,
            runtime=lambda wc: 60 * len(PLAN.run_ids(wc.task, wc.variant)),
        params:
            test=lambda wc: str(PLAN.split_dir(wc.task, "test")),
            save=eval_save_images,
            device=DEVICE,
            crop_hr="--crop-hr" if PROTOCOL.eval_crop_hr else "",
        shell:
            "OMP_NUM_THREADS={threads} python -m ioda evaluate --model {input.models} --data {params.test} "
            "--out-csv {output.per_image} --out-json {output.summary} {params.save} {params.crop_hr} "
            "--device {params.device} > {log} 2>&1 && mkdir -p {output.images}"


for _name, _runs, _constraints in cell_rules("evaluate", untrained=True):
    _evaluate_cell_rule(_name, _runs, _constraints)
