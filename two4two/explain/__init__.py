"""Explanations of trained models: counterfactuals (and, later, baselines and concepts)."""
