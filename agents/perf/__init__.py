"""Speed benchmarks (``hpo-rl bench``): ratios measured side by side in one run."""
