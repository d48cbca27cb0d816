"""Dataset audit: duplicates (exact, near, across splits), label issues, outliers, placeholders,
image and file properties, skipped files and class imbalance, each finding with its evidence
and the fix. See core.py for the entry points."""

from cnnlab.audit.core import AuditMode, AuditThresholds, audit, audit_source
from cnnlab.audit.embed import Embedder, ModelEmbedder
from cnnlab.audit.findings import AuditReport, Check, Code, Finding, Severity
from cnnlab.audit.source import AuditData, fashion_mnist_source, folder_source, from_folder_data

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
