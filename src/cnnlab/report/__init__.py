"""The run report: report.html, one self-contained page (see `cnnlab.report.html`)."""

from cnnlab.report.html import REPORT, write_report

__all__ = ["REPORT", "write_report"]

from cnnlab.callable_package import make_callable  # noqa: E402

make_callable(__name__, "report")
