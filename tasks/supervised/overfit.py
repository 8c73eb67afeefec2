"""Families where the rate must be cut or annealed: small, noisy training sets and wide
networks, trained long enough that validation loss turns up while training loss falls.

A controller that watches only the training loss keeps the rate high into
overfitting; on these tasks the final validation loss rewards cutting the rate
once validation stops improving (or annealing it to settle in a good basin).
They reuse the data and network machinery of `tasks.supervised.synthetic` and
`tasks.supervised.digits` with ranges chosen to overfit.
"""

from __future__ import annotations

from tasks.family import TaskFamily
from tasks.supervised.choices import TrainingChoices
from tasks.supervised.digits import DigitsMlpFamily
from tasks.supervised.synthetic import GaussianMixtureMlpFamily, TeacherRegressionMlpFamily

OVERFIT_CHOICES = TrainingChoices(
    widths=(64, 128),
    depths=(2, 3),
    batch_sizes=(16, 32),
    control_steps=(40, 60, 80),
    updates_per_step=(10, 15, 20),
)
"""Wide nets, small batches, long runs: many epochs over a small training set."""


def overfit_families() -> list[TaskFamily]:
    """Noisy-label mixtures, noisy teacher regression and small digit sets."""
    return [
        GaussianMixtureMlpFamily(
            name="overfit_mixture_mlp",
            n_train=(48, 256),
            label_noise=(0.1, 0.4),
            separation=(1.5, 4.0),
            choices=OVERFIT_CHOICES,
        ),
        TeacherRegressionMlpFamily(
            name="overfit_teacher_mlp",
            n_train=(32, 192),
            noise_std=(0.3, 1.0),
            choices=OVERFIT_CHOICES,
        ),
        DigitsMlpFamily(name="overfit_digits_mlp", n_train=(40, 200), choices=OVERFIT_CHOICES),
    ]
