"""Dataset audit: duplicates (exact, near, across splits), label issues, outliers, placeholders,
image and file properties, skipped files and class imbalance, each finding with its evidence
and the fix. See core.py for the entry points, run.py for the audit inside `cnnlab train`.

Called, this package is the API function `cnnlab.api.audit`: importing it rebinds the name
`audit` of the `cnnlab` package to it (Python sets a subpackage as an attribute of its parent),
so `cnnlab.audit("photos/")` has to work whether that name holds the function or the package.
"""

from cnnlab.audit.core import AuditMode, AuditThresholds, audit, audit_source
from cnnlab.audit.embed import Embedder, ModelEmbedder
from cnnlab.audit.findings import AuditReport, Check, Code, Finding, Severity
from cnnlab.audit.source import AuditData, fashion_mnist_source, folder_source, from_folder_data
from cnnlab.callable_package import make_callable

__all__ = [
    "AuditData",
    "AuditMode",
    "AuditReport",
    "AuditThresholds",
    "Check",
    "Code",
    "Embedder",
    "Finding",
    "ModelEmbedder",
    "Severity",
    "audit",
    "audit_source",
    "fashion_mnist_source",
    "folder_source",
    "from_folder_data",
]


make_callable(__name__, "audit")
