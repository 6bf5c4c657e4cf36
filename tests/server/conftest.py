import pytest
from server_process import save_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """One tiny model for every server test of the session (saving it takes seconds)."""
    return save_tiny_model(tmp_path_factory.mktemp("model"))
