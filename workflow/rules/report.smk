# Stage 6: aggregate (mean and variance over the N target images; oracle best step apart) -> tables ->
# figures -> results/summary.md.


rule effective_config:
    # The report commands read the config exactly as this run sees it (configfile + --config overrides,
    # validated, defaults filled). As a param it is rewritten, and the report redone, when any setting changes.
    output:
        EFFECTIVE_CONFIG,
    log:
        "logs/report/effective_config.log",
    conda:
        CONDA_ENV
    params:
        cfg=json.dumps(config, indent=2, sort_keys=True),
    shell:
        "printf '%s\\n' {params.cfg:q} > {output} 2> {log}"


rule aggregate:
    input:
        config=EFFECTIVE_CONFIG,
        evals=all_evaluated(),
        adapts=adapt_jsons(),  # also stands for the curve.csv next to the report.curves cell's
    output:
        runs=report(
            f"{RES}/metrics/runs.csv", caption="../report/runs.rst", category="Metrics", labels={"file": "runs"}
        ),
        cells=report(
            f"{RES}/metrics/aggregate.csv",
            caption="../report/aggregate.rst",
            category="Metrics",
            labels={"file": "table cells"},
        ),
        metrics=f"{RES}/metrics/metrics.json",
        curves=f"{RES}/metrics/curves.csv",
    log:
        "logs/report/aggregate.log",
    conda:
        CONDA_ENV
    params:
        out_dir=lambda wc, output: os.path.dirname(output.cells),
    shell:
        "python -m ioda aggregate --config {input.config} --out-dir {params.out_dir} > {log} 2>&1"


rule tables:
    input:
        config=EFFECTIVE_CONFIG,
        cells=f"{RES}/metrics/aggregate.csv",
    output:
        csv=expand(f"{RES}/tables/{{table}}.csv", table=table_names()),
        md=report(
            expand(f"{RES}/tables/{{table}}.md", table=table_names()),
            caption="../report/tables.rst",
            category="Tables",
        ),
        tex=expand(f"{RES}/tables/{{table}}.tex", table=table_names()),
    log:
        "logs/report/tables.log",
    conda:
        CONDA_ENV
    params:
        out_dir=lambda wc, output: os.path.dirname(output.csv[0]),
    shell:
        "python -m ioda tables --config {input.config} --aggregate {input.cells} --out-dir {params.out_dir} > {log} 2>&1"


rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            f"{RES}/figures/{{figure}}.png",
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        pdf=f"{RES}/figures/{{figure}}.pdf",
    log:
        "logs/report/{figure}.log",
    benchmark:
        "logs/benchmarks/report/{figure}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        gpu=lambda wc: GPU if wc.figure == "fig4_tsne" else 0,  # Fig. 4 runs the CLIP encoder
        mem_mb=4000,
        runtime=30,
    params:
        out_dir=lambda wc, output: os.path.dirname(output.png),
    shell:
        "OMP_NUM_THREADS={threads} python -m ioda figures {wildcards.figure} --config {input.config} "
        "--out-dir {params.out_dir} > {log} 2>&1"


rule summary:
    input:
        config=EFFECTIVE_CONFIG,
        cells=f"{RES}/metrics/aggregate.csv",
        encoder=f"{RES}/encoder/card.json",
        tables=rules.tables.output,
        figures=expand(f"{RES}/figures/{{figure}}.png", figure=figure_names()),
    output:
        report(f"{RES}/summary.md", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/report/summary.log",
    conda:
        CONDA_ENV
    shell:
        "python -m ioda report --config {input.config} --out {output} > {log} 2>&1"
