"""Supervised training (source pre-training, fine-tune upper bound, ZSSR) and the `ioda pretrain` command."""
