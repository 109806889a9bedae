import pytest

from nbvene.engine.run import Sweep


@pytest.fixture(scope="module")
def rows_per_entry():
    """Keep every sweep row its own batch entry (no packed passes, which hold tokens rather
    than rows: test_packed.py), for tests that count rows per pass."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sweep, "packing", property(lambda self: False))
        yield
