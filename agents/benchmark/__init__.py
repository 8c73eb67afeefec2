"""The evaluation protocol: methods as objects, work items (local or Ray), statistics, reports, PBT."""
