"""How good a generator is, without downloads: noise and samples (``sampling.py``), a
digit classifier as the feature space (``classifier.py``), FID, KID and class coverage
in it, also as torchgan metrics (``scores.py``), standard Inception FID/KID from
weights the user supplies (``inception.py``), and the check that samples are neither
copies of the training images nor collapsed (``memorization.py``)."""

from .classifier import DigitClassifier, digit_classifier, train_digit_classifier
from .inception import inception_features, inception_fid, inception_kid
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
    "inception_features", "inception_fid", "inception_kid",
    "memorization_report", "nearest_training_images", "verdict",
]
