"""The one exception type for user mistakes: the CLI prints it as one line, no traceback."""


class UserError(Exception):
    """Bad input from the user (missing file, wrong CSV, unknown genre, ...)."""


class TrainingDiverged(UserError):
    """A loss became NaN or inf; training stopped without saving the unhealthy weights."""
