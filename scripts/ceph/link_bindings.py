#!/usr/bin/env python3
"""Make Debian's librados/librbd Python bindings importable from this interpreter's venv.

    .venv/bin/python scripts/ceph/link_bindings.py [--source-dir /usr/lib/python3/dist-packages]

The ``rados`` and ``rbd`` modules come from Debian's python3-rados and
python3-rbd (they are not on PyPI and must match the installed librados and
librbd). They are compiled extension modules for Debian's python3, so this
script:

* looks for ``rados<EXT_SUFFIX>`` and ``rbd<EXT_SUFFIX>`` in the source
  directory, ``EXT_SUFFIX`` being the running interpreter's (e.g.
  ``.cpython-311-x86_64-linux-gnu.so``): the same ABI tag means they load;
* symlinks just those two files into ``<venv>/lib/pieceworks-ceph/`` and writes
  ``<site-packages>/pieceworks-ceph.pth`` naming that directory, so nothing
  else of Debian's dist-packages shadows the venv's own packages;
* checks that ``import rados, rbd`` then works in a fresh interpreter.

Idempotent. Exits 1 with the reason when the modules are missing (install
python3-rados and python3-rbd: ``scripts/install-system-deps.sh``) or built
for another Python (then build the venv from Debian's interpreter:
``make clean && make PYTHON=/usr/bin/python3 test``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
from pathlib import Path

MODULES = ("rados", "rbd")
PTH = "pieceworks-ceph.pth"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", type=Path, default=Path("/usr/lib/python3/dist-packages"))
    args = parser.parse_args(argv)
    if sys.prefix == sys.base_prefix:
        print(
            "link_bindings.py: run it with a virtualenv's python, not the system's", file=sys.stderr
        )
        return 1
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    found = {m: args.source_dir / f"{m}{suffix}" for m in MODULES}
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        built = sorted(p.name for m in MODULES for p in args.source_dir.glob(f"{m}.*.so"))
        if built:
            why = (
                f"they are built for another Python ({', '.join(built)}), this venv runs"
                f" {sys.version.split()[0]} ({suffix}): build the venv from Debian's"
                " interpreter: make clean && make PYTHON=/usr/bin/python3 test"
            )
        else:
            why = "install python3-rados and python3-rbd (scripts/install-system-deps.sh)"
        print(f"link_bindings.py: missing {', '.join(missing)}: {why}", file=sys.stderr)
        return 1
    target = Path(sys.prefix) / "lib" / "pieceworks-ceph"
    target.mkdir(parents=True, exist_ok=True)
    for path in found.values():
        link = target / path.name
        if link.is_symlink() or link.exists():
            if link.resolve() == path.resolve():
                continue
            link.unlink()
        link.symlink_to(path)
    site = Path(sysconfig.get_paths()["purelib"])
    (site / PTH).write_text(f"{target}\n")
    check = subprocess.run(
        [sys.executable, "-c", "import rados, rbd; print(rados.__file__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        print(f"link_bindings.py: import rados, rbd still fails:\n{check.stderr}", file=sys.stderr)
        return 1
    print(f"rados and rbd importable from {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
