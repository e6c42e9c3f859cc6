# Stage 4: one job per backbone x task x variant cell adapts all the cell's target images in one process (the
# source model, encoder and source pool load once; each image is re-seeded, so its files equal a run of its
# own). Output lists have one entry per image, so there is one rule per image count (rules adapt_<n>_images);
# finetune has one run per cell (`all`), the `baseline` cell needs none. With adapt.eval_every > 0 every
# direction-loss run also writes its PSNR-vs-step curve.csv (adapt --eval-every, step 0 included: final and
# oracle best step, in its adapt.json; the report reads the curves through the adapt.json).


def _adapt_cell_rule(name, runs, constraints):
    cell = f"{RES}/adapt/{{backbone}}/{{task}}/{{variant}}"

    rule:
        name:
            name
        input:
            unpack(adapt_inputs),
        output:
            models=[f"{cell}/{r}/model.safetensors" for r in runs],
            infos=[f"{cell}/{r}/adapt.json" for r in runs],
            losses=[f"{cell}/{r}/train_log.csv" for r in runs],
        log:
            "logs/adapt/{backbone}/{task}/{variant}.log",
        benchmark:
            "logs/benchmarks/adapt/{backbone}/{task}/{variant}.tsv"
        wildcard_constraints:
            **constraints,
        conda:
            CONDA_ENV
        threads: THREADS
        resources:
            gpu=GPU,
            mem_mb=8000,
            runtime=lambda wc: 120 * len(PLAN.run_ids(wc.task, wc.variant)),
        params:
            photo=adapt_photo,
            out_dir=adapt_out_dir,
            source_data=lambda wc: str(PLAN.split_dir(wc.task, "source")),
            settings=adapt_settings,
            device=DEVICE,
            extra=adapt_extra,
        shell:
            "OMP_NUM_THREADS={threads} python -m ioda adapt {params.photo} --model {input.model} "
            "--source-data {params.source_data} --out-dir {params.out_dir} --variant {wildcards.variant} "
            "--settings-json {params.settings:q} --device {params.device} --no-sr {params.extra} > {log} 2>&1"


for _name, _runs, _constraints in cell_rules("adapt"):
    _adapt_cell_rule(_name, _runs, _constraints)
