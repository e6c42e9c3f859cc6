# Stage 2b: the degradation encoder of the direction loss, trained on source-domain HR only (encoder.name:
# degradation without weights): `ioda pretrain-encoder`, safetensors + a JSON card (recipe, data hashes, probes).
# Every task's target is passed as --targets, so a target dataset can never be training data.


rule pretrain_encoder:
    input:
        data=lambda wc: [str(PLAN.manifest(d)) for d in PLAN.encoder_datasets()],
    output:
        weights=f"{RES}/encoder/{{encoder}}.safetensors",
        card=f"{RES}/encoder/{{encoder}}.json",
        losses=f"{RES}/encoder/{{encoder}}_train_log.csv",
    log:
        "logs/encoder/{encoder}.log",
    benchmark:
        "logs/benchmarks/encoder/{encoder}.tsv"
    conda:
        CONDA_ENV
    threads: max(THREADS, 2)
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        splits=lambda wc: " ".join(
            shlex.quote(str(PLAN.data / d / PLAN.source_split(d))) for d in PLAN.encoder_datasets()
        ),
        targets=lambda wc: " ".join(sorted({shlex.quote(t["target"]) for t in PLAN.tasks.values()})),
        recipe=encoder_recipe,
    shell:
        "python -m ioda pretrain-encoder --data {params.splits} --out {output.weights} --card {output.card} "
        "--targets {params.targets} {params.recipe} --threads {threads} --log-csv {output.losses} > {log} 2>&1"


# What encoder this configuration's runs use (every configuration has one: the DVC stage `encoder` keeps it).
rule encoder_card:
    input:
        weights=lambda wc: [str(PLAN.encoder_file())] if PLAN.encoder_trained_here() else [],
    output:
        card=f"{RES}/encoder/card.json",
    log:
        "logs/encoder/card.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        name=config["encoder"]["name"],
        weights=lambda wc: (
            f"--weights {shlex.quote(PLAN.encoder_weights('ioda'))}" if PLAN.encoder_weights("ioda") else ""
        ),
    shell:
        "python -m ioda encoder-card --name {params.name} {params.weights} --out {output.card} > {log} 2>&1"
