"""Datasets on disk: a crash-safe writer with resume, render jobs, and a PyTorch Dataset (the
paths, split names and readers are two4two.layout's, re-exported here).

    writer.py         SplitWriter (crash-safe, resumable, in planned order) and the output-directory check
    jobs.py           plan a config, render what is missing through one pool, add interventions, ensure
    overview.py       images above their masks, for a glance
    torch_dataset.py  Two4TwoDataset for PyTorch
"""

from two4two.dataset.jobs import RenderJob, add_intervention_splits, ensure, plan_config, plan_params_file, render_splits, run_render_job
from two4two.layout import (
    FORMAT_VERSION,
    MANIFEST,
    MASK_LABELS,
    DatasetError,
    fingerprint,
    load_image,
    load_mask,
    load_split_arrays,
    package_versions,
    read_manifest,
    read_split,
    write_manifest,
)
from two4two.dataset.overview import mask_palette, write_overview
from two4two.dataset.torch_dataset import Two4TwoDataset
from two4two.dataset.writer import SplitWriter, prepare_output

__all__ = [
    "FORMAT_VERSION", "MANIFEST", "MASK_LABELS", "DatasetError", "RenderJob", "SplitWriter", "Two4TwoDataset",
    "add_intervention_splits", "ensure", "fingerprint", "load_image", "load_mask", "load_split_arrays", "mask_palette",
    "package_versions", "plan_config", "plan_params_file", "prepare_output", "read_manifest", "read_split",
    "render_splits", "run_render_job", "write_manifest", "write_overview",
]
