# Stage 6: aggregate (mean and variance over the N target images; oracle best step apart) -> tables ->
# figures -> results/summary.md.


rule effective_config:
    # The report commands read the config exactly as this run sees it (configfile + --config overrides,
    # validated, defaults filled). As a param it is rewritten, and the report redone, when any setting changes.
    output:
        EFFECTIVE_CONFIG,
    params:
        cfg=json.dumps(config, indent=2, sort_keys=True),
    conda:
        CONDA_ENV
    log:
        "logs/report/effective_config.log",
    shell:
        "printf '%s\\n' {params.cfg:q} > {output} 2> {log}"


rule aggregate:
    input:
        config=EFFECTIVE_CONFIG,
        evals=all_evaluated(),
        adapts=adapt_jsons(),  # also stands for the curve.csv next to the report.curves cell's
    output:
        runs=f"{RES}/metrics/runs.csv",
        cells=report(f"{RES}/metrics/aggregate.csv", category="Metrics"),
        metrics=f"{RES}/metrics/metrics.json",
        curves=f"{RES}/metrics/curves.csv",
    params:
        out_dir=lambda wc, output: os.path.dirname(output.cells),
    conda:
        CONDA_ENV,
    log:
        "logs/report/aggregate.log",
    shell:
        "python -m ioda aggregate --config {input.config} --out-dir {params.out_dir} > {log} 2>&1"


rule tables:
    input:
        config=EFFECTIVE_CONFIG,
        cells=f"{RES}/metrics/aggregate.csv",
    output:
        csv=expand(f"{RES}/tables/{{table}}.csv", table=table_names()),
        md=report(expand(f"{RES}/tables/{{table}}.md", table=table_names()), category="Tables"),
        tex=expand(f"{RES}/tables/{{table}}.tex", table=table_names()),
    params:
        out_dir=lambda wc, output: os.path.dirname(output.csv[0]),
    conda:
        CONDA_ENV,
    log:
        "logs/report/tables.log",
    shell:
        "python -m ioda tables --config {input.config} --aggregate {input.cells} --out-dir {params.out_dir} > {log} 2>&1"


rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(f"{RES}/figures/{{figure}}.png", category="Figures"),
        pdf=f"{RES}/figures/{{figure}}.pdf",
    params:
        out_dir=lambda wc, output: os.path.dirname(output.png),
    conda:
        CONDA_ENV,
    log:
        "logs/report/{figure}.log",
    benchmark:
        "logs/benchmarks/report/{figure}.tsv"
    threads: THREADS
    resources:
        gpu=lambda wc: GPU if wc.figure == "fig4_tsne" else 0,  # Fig. 4 runs the CLIP encoder
        mem_mb=4000,
        runtime=30,
    shell:
        "OMP_NUM_THREADS={threads} python -m ioda figures {wildcards.figure} --config {input.config} "
        "--out-dir {params.out_dir} > {log} 2>&1"


rule summary:
    input:
        config=EFFECTIVE_CONFIG,
        cells=f"{RES}/metrics/aggregate.csv",
        tables=rules.tables.output,
        figures=expand(f"{RES}/figures/{{figure}}.png", figure=figure_names()),
    output:
        report(f"{RES}/summary.md", category="Summary"),
    conda:
        CONDA_ENV,
    log:
        "logs/report/summary.log",
    shell:
        "python -m ioda report --config {input.config} --out {output} > {log} 2>&1"
