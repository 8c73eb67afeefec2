"""Supervised task families: synthetic classification / regression, sinusoids, digits."""

from __future__ import annotations

from tasks.family import TaskFamily
from tasks.supervised.base import SupervisedTask
from tasks.supervised.choices import TrainingChoices
from tasks.supervised.digits import DigitsCnnFamily, DigitsData, DigitsMlpFamily
from tasks.supervised.overfit import overfit_families
from tasks.supervised.synthetic import (
    GaussianMixtureData,
    GaussianMixtureMlpFamily,
    SinusoidData,
    SinusoidMlpFamily,
    TeacherRegressionData,
    TeacherRegressionMlpFamily,
)


def supervised_families() -> list[TaskFamily]:
    """One instance of every supervised family, with its default ranges."""
    return [
        GaussianMixtureMlpFamily(),
        TeacherRegressionMlpFamily(),
        SinusoidMlpFamily(),
        DigitsMlpFamily(),
        DigitsCnnFamily(),
        *overfit_families(),
    ]


__all__ = [
    "DigitsCnnFamily",
    "DigitsData",
    "DigitsMlpFamily",
    "GaussianMixtureData",
    "GaussianMixtureMlpFamily",
    "SinusoidData",
    "SinusoidMlpFamily",
    "SupervisedTask",
    "TeacherRegressionData",
    "TeacherRegressionMlpFamily",
    "TrainingChoices",
    "supervised_families",
]
