"""Classifiers, the invertible network and the observer, with their training."""
