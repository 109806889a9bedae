"""Peer libraries print (pyvene: "nnsight is not detected") and warn: run them quietly."""

import contextlib
import io
import warnings


@contextlib.contextmanager
def quiet():
    """No stdout, stderr or warnings inside the block; keeps the test output clean."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield
