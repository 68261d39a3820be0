"""Training with torchgan's ``Trainer``: building one from a config and stepping it
(``trainer.py``), several GPUs (``distributed.py``, ``sharding.py``), logging without host waits
(``deferred_logging.py``), progress and attention logs (``monitoring.py``),
checkpoints read without trusting them (``checkpoints.py``), the run folder and the
config beside its checkpoints (``run_folder.py``), the loop of long runs: divergence,
mid-epoch checkpoints, exact resume, rollbacks, pre-emption (``resumable.py``,
``divergence.py``, ``rollback.py``, ``preemption.py``, ``run_state.py``), and the fixes torchgan 0.1.0 needs on current torch
(``torchgan_fixes.py``)."""

from .checkpoints import CorruptCheckpointError, UntrustedCheckpointError, latest_intact_checkpoint, load_checkpoint
from .divergence import DivergenceError
from .run_folder import load_generator, read_config, write_config
from .torchgan_fixes import apply_torchgan_fixes
from .trainer import SAGANTrainer, make_trainer, train_step

__all__ = ["SAGANTrainer", "make_trainer", "train_step", "load_generator", "read_config", "write_config",
           "load_checkpoint", "latest_intact_checkpoint", "CorruptCheckpointError", "UntrustedCheckpointError",
           "apply_torchgan_fixes", "DivergenceError"]
