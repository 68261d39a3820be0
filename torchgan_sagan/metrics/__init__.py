"""How good a generator is: noise and samples (``sampling.py``), a
digit classifier as the feature space (``classifier.py``), FID, KID and class coverage
in it, also as torchgan metrics (``scores.py``), the Inception network and its weights
(``inception.py``), the scores papers print (``standard.py``: FID, KID, IS and
precision/recall by torch-fidelity's code), density and coverage, per class too
(``coverage.py``), and the check that samples are neither
copies of the training images nor collapsed (``memorization.py``)."""

from .classifier import DigitClassifier, digit_classifier, train_digit_classifier
from .inception import inception_features, inception_fid, inception_kid
from .standard import standard_scores
from .coverage import density_coverage, per_class_coverage
from .memorization import memorization_report, nearest_training_images, verdict
from .sampling import generate, interpolation_noise, noise, sample_labels
from .scores import (
    FID,
    KID,
    ClassCoverage,
    InceptionFID,
    class_accuracy,
    class_coverage,
    digit_scores,
    diversity,
    evaluate,
    fid,
    kid,
    mean_std,
)

__all__ = [
    "generate", "noise", "interpolation_noise", "sample_labels",
    "DigitClassifier", "digit_classifier", "train_digit_classifier",
    "fid", "kid", "class_coverage", "class_accuracy", "digit_scores", "evaluate", "diversity", "mean_std",
    "FID", "KID", "ClassCoverage", "InceptionFID",
    "inception_features", "inception_fid", "inception_kid", "standard_scores",
    "density_coverage", "per_class_coverage",
    "memorization_report", "nearest_training_images", "verdict",
]
