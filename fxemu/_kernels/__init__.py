"""Numba kernels: plain arrays and numbers in, plain arrays out; no validation here."""
