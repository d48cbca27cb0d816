"""One severity scale for every finding cnnlab reports (the doctor's and the audit's).

- error: as configured, the run cannot succeed, or its reported accuracy cannot be trusted
- warning: worth fixing before (another) training run
- info: worth knowing; nothing to fix
"""

from __future__ import annotations

import enum


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for the most severe: the sort key of every findings list."""
        return {"error": 0, "warning": 1, "info": 2}[self.value]
