"""`cnnlab.report(run)` and `import cnnlab.report.html` at once.

The API functions `audit`, `doctor`, `explain` and `report` share their names with subpackages.
Importing a subpackage makes it the attribute of its parent (the import system does that), so
after `import cnnlab.report.html` (which training does when it writes report.html) the name
`cnnlab.report` holds the package, not the function. Making the package callable keeps both
meanings: `cnnlab.report(run)` calls the API function, `cnnlab.report.write_report` is the module
attribute, and `import cnnlab.report as pkg` still gets the package.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def make_callable(package: str, api_function: str) -> None:
    """Calling the module `package` calls `cnnlab.api.<api_function>` with the same arguments.
    Only that module object's class changes: nothing global."""

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            from cnnlab import api

            return getattr(api, api_function)(*args, **kwargs)

    CallablePackage.__call__.__doc__ = f"cnnlab.api.{api_function}"
    sys.modules[package].__class__ = CallablePackage
