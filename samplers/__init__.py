"""The catalogue of bias scenarios, one module per scenario.

Configs name a sampler by a short registered name (see `two4two.sampling.REGISTRY`)
or as 'module:Class', e.g. `samplers.study2022:StudySampler`.
"""
