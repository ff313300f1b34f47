"""The one exception type for user mistakes: the CLI prints it as one line, no traceback."""


class UserError(Exception):
    """Bad input from the user (missing file, wrong CSV, unknown genre, ...)."""


class TrainingDiverged(UserError):
    """A loss became NaN or inf; training stopped without saving the unhealthy weights."""


def out_of_memory(e: BaseException) -> bool:
    """Whether `e` is the device (or the host) running out of memory: torch.cuda.OutOfMemoryError,
    MemoryError, or the RuntimeError a CPU allocation raises ("DefaultCPUAllocator: can't allocate")."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
