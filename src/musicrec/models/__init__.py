"""Models: ALS engines, baselines and the on-disk artifact."""
