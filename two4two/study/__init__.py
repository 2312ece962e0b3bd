"""The user study: bundles, the web app, responses and their analysis, one pipeline for every
paradigm (two4two.study.pipeline)."""
