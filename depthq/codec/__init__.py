"""Entropy-coded files from an autoencoder and its learned prior (``.dqz``)."""
