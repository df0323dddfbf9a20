"""Hyper-parameter search with Ray Tune: each trial is a distributed training run."""
