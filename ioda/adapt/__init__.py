"""One-shot domain adaptation: the direction loss, the ablation variants, the trainer and the baselines."""
