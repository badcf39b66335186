"""The paper's experiments as commands: capacity, static prior, decoupling, ablation."""
