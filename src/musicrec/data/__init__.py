"""Data: loaders for raw formats, synthetic data, downloads and the prepare stage."""
