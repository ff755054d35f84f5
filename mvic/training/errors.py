"""The trainer's error: anything that stops a training run, with a message that names the fix."""


class TrainingError(RuntimeError):
    pass
