"""Build hook: put the pinned official JavaScript client into every build (see siolab/widgets/vendor.py).

The files are git-ignored (they come from the npm registry, checked against a pinned integrity hash),
so hatch would leave them out: they are force-included into wheels and sdists. An editable install
reads them from the source tree, where ``vendor.fetch`` writes them.
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _vendor_module(root: Path):
    # loaded by path: the package's dependencies are not installed while it is being built
    spec = importlib.util.spec_from_file_location("_siolab_vendor", root / "siolab" / "widgets" / "vendor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class JavaScriptClientHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        vendor = _vendor_module(root)
        started = time.monotonic()
        try:
            how = vendor.fetch(root / "siolab" / "widgets" / "static" / "vendor")
        except vendor.VendorError as exc:
            if version == "editable":  # the lab still installs; the browser-client widget says how to fix it
                print(f"siolab build hook: WARNING: {exc}\nThe browser-client widget will not work until "
                      f"`python -m siolab.widgets.vendor` succeeds.", file=sys.stderr)
                return
            raise
        print(f"siolab build hook: {vendor.NAME} {vendor.VERSION}: {how} "
              f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
        if version == "editable":
            return  # the source tree is on sys.path: the files are found where fetch() wrote them
        for name, _digest in vendor.FILES.values():
            relative = f"siolab/widgets/static/vendor/{name}"
            build_data["force_include"][str(root / relative)] = relative
