"""Any `nn.Module` as a meta-training task, B copies batched through ``torch.func``.

- `tasks.functional.run`: the batched run (`FunctionalBatchedRun`) and its plain loop twin;
- `tasks.functional.models`: the ordinary modules the families train;
- `tasks.functional.data`: shipped (scikit-learn, Python's standard library) and generated data;
- `tasks.functional.task`: `FunctionalTask`, one problem;
- `tasks.functional.families`: the families and their train / validation / test roles;
- `tasks.functional.splits`: distributions by role and the split table.
"""

from tasks.functional.families import ROLES, FunctionalFamily, functional_families
from tasks.functional.run import FunctionalBatchedRun, FunctionalTorchRun, ModuleNet
from tasks.functional.task import FunctionalTask

__all__ = [
    "ROLES",
    "FunctionalBatchedRun",
    "FunctionalFamily",
    "FunctionalTask",
    "FunctionalTorchRun",
    "ModuleNet",
    "functional_families",
]
