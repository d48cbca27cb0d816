import pytest


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One real tiny run shared by the report tests: 600 Fashion-MNIST images, 2 epochs."""
    from tests.conftest import QUICK, _fmnist_present

    from cnnlab.api import train

    if not _fmnist_present():
        pytest.skip("Fashion-MNIST is not installed (`make data` installs it)")
    runs = tmp_path_factory.mktemp("report-runs")
    return train(QUICK, name="quick", runs_dir=runs, log=lambda line: None).run_dir


@pytest.fixture(scope="session")
def report(trained_run):
    from cnnlab.report import write_report

    return write_report(trained_run)
