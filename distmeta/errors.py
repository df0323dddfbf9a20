"""The errors distmeta raises on purpose.

Each one names what is at fault (a config field, a file, a step) so that a user
can fix it without reading a traceback. They are raised before work starts
wherever possible, so that nothing is lost.
"""


class DistmetaError(Exception):
    """Base class of every error distmeta raises on purpose.

    Every one pickles with its fields (`NonFiniteLossError.step`, `ConfigError.field`,
    notes added on the way), so that the error a Ray worker raised is the one the
    driver re-raises. Python's default would call `cls(*args)` with the message alone,
    which the subclasses' own constructors (taking their fields) refuse.
    """

    def __reduce__(self):
        return _rebuilt, (type(self), self.args), self.__dict__


def _rebuilt(cls: type, args: tuple) -> DistmetaError:
    """An instance of `cls` with `args`, its constructor skipped; pickle then restores its fields."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class ConfigError(DistmetaError, ValueError):
    """A config value is invalid; the message starts with the dotted field name."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class DatasetError(DistmetaError):
    """Task data is missing, malformed or too small; the message names the path."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class NotEnoughClassesError(DatasetError, ConfigError):
    """The data has fewer classes than `task.ways` (or, for meta-training, `task.train_ways`) asks for.

    Both a data problem and a config problem, so it can be caught as either.
    """

    def __init__(self, path, split: str, available: int, ways: int, field: str = "task.ways"):
        self.path = str(path)
        self.field = field
        self.split = split
        DistmetaError.__init__(
            self,
            f"{field}: {ways} ways asked for, but the {split} split of {self.path} has only {available} classes",
        )


class NonFiniteLossError(DistmetaError, FloatingPointError):
    """The meta-loss became NaN or infinite; training stops before any checkpoint."""

    def __init__(self, step: int, task_seed: int, loss: float):
        self.step = step
        self.task_seed = task_seed
        self.loss = loss
        super().__init__(
            f"meta-loss is {loss} at step {step} (task seed {task_seed}); "
            "training stopped and no checkpoint was written after it. "
            "Lower algorithm.inner_lr or train.meta_lr."
        )


class CheckpointError(DistmetaError):
    """A checkpoint is missing, corrupt or does not fit the config."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class StorageError(DistmetaError):
    """The run's storage refused a write (full, read-only, gone); the message names the path."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class RunTakenOverError(DistmetaError):
    """Another driver claimed this run while it was going (see `runtime.session`): this one stops."""

    def __init__(self, path, owner: str):
        self.path = str(path)
        self.owner = owner
        super().__init__(
            f"{self.path}: another session took this run over ({owner}), so this one stopped without "
            "writing more; its checkpoints are intact and the other session resumes from the newest"
        )


class KnowledgeBaseError(DistmetaError):
    """A knowledge-base file is unreadable, from another config, or the store cannot answer."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class InputError(DistmetaError, ValueError):
    """An argument of the Python API has the wrong shape, length, type or labels."""

    def __init__(self, argument: str, expected: str, received: str):
        self.argument = argument
        self.expected = expected
        self.received = received
        super().__init__(f"{argument}: expected {expected}, got {received}")


class ScaleUpTimeoutError(DistmetaError):
    """The autoscaler did not provide the workers' resources in time; nothing was started."""


class RecoveryFailedError(DistmetaError):
    """Ray Train gave up restarting a run's workers (too many failures, or a lost node's
    capacity not back in time); the message says why and where the same command resumes."""

    def __init__(self, cause: str, resume_step: int | None):
        self.cause = cause
        self.resume_step = resume_step
        resumes = (
            "no checkpoint was written: the same command starts it again"
            if resume_step is None
            else f"the checkpoint of step {resume_step} is kept: the same command resumes from it"
        )
        super().__init__(f"{cause}; {resumes}")
