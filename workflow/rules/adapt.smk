# Stage 4: one adaptation per backbone x task x variant x target image (the `baseline` cell needs none).


rule adapt:
    input:
        unpack(adapt_inputs),
    output:
        model=f"{RES}/adapt/{{backbone}}/{{task}}/{{variant}}/{{run}}/model.safetensors",
        info=f"{RES}/adapt/{{backbone}}/{{task}}/{{variant}}/{{run}}/adapt.json",
        losses=f"{RES}/adapt/{{backbone}}/{{task}}/{{variant}}/{{run}}/train_log.csv",
    log:
        "logs/adapt/{backbone}/{task}/{variant}/{run}.log",
    benchmark:
        "logs/benchmarks/adapt/{backbone}/{task}/{variant}/{run}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=120,
    params:
        photo=adapt_photo,
        out_dir=lambda wc, output: os.path.dirname(output.model),
        source_data=lambda wc: str(PLAN.split_dir(wc.task, "source")),
        steps=adapt_steps,
        batch_size=config["adapt"]["batch_size"],
        lr_patch=config["adapt"]["lr_patch"],
        lr=config["adapt"]["lr"],
        betas=" ".join(str(b) for b in config["adapt"]["betas"]),
        protocol=config["adapt"]["protocol"],
        seed=config["run"]["seed"],
        device=DEVICE,
        extra=adapt_extra,
    shell:
        "OMP_NUM_THREADS={threads} python -m ioda adapt {params.photo} --model {input.model} "
        "--source-data {params.source_data} --out-dir {params.out_dir} --variant {wildcards.variant} "
        "--steps {params.steps} --batch-size {params.batch_size} --lr-patch {params.lr_patch} --lr {params.lr} "
        "--betas {params.betas} --protocol {params.protocol} --seed {params.seed} "
        "--device {params.device} --no-sr {params.extra} > {log} 2>&1"


# With adapt.eval_every > 0 every direction-loss run also writes its PSNR-vs-step curve (adapt --eval-every,
# step 0 included: final and oracle best step): the same rule with one more output, chosen for those runs.
use rule adapt as adapt_with_curve with:
    output:
        model=f"{RES}/adapt/{{backbone}}/{{task}}/{{variant}}/{{run}}/model.safetensors",
        info=f"{RES}/adapt/{{backbone}}/{{task}}/{{variant}}/{{run}}/adapt.json",
        losses=f"{RES}/adapt/{{backbone}}/{{task}}/{{variant}}/{{run}}/train_log.csv",
        curve=f"{RES}/adapt/{{backbone}}/{{task}}/{{variant}}/{{run}}/curve.csv",
    wildcard_constraints:
        **CURVE_CONSTRAINTS,


ruleorder: adapt_with_curve > adapt
