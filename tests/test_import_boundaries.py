"""Package boundaries run one way: relay/ may use protocol/ and vision/, never the reverse;
bench/ may use the product but never tests/ (tests may use bench/).

Every module of a package is parsed (no import runs) and every import statement in it,
top-level or inside a function, is checked, so a lazy import cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from relay.config import Config
from vision.settings import VisionSettings

ROOT = Path(__file__).resolve().parent.parent

# package -> the top-level packages it must not import
FORBIDDEN = {
    "protocol": {"relay", "bench", "tests"},
    "vision": {"relay", "bench", "tests"},
    "bench": {"tests"},
}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports stay in its package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def offending_imports(package: str, forbidden: set[str]) -> list[str]:
    found = []
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found in {package}/"
    for path in files:
        for name in sorted(imported_modules(path)):
            if name.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_it_must_not(package):
    assert offending_imports(package, FORBIDDEN[package]) == []


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from relay.config import Config\n    import tests.x\n")
    assert imported_modules(module) == {"relay.config", "tests.x"}


def test_vision_settings_defaults_match_the_relay_config():
    assert Config().vision == VisionSettings()
    changed = Config(face_min_px=40, vision_enabled=False).vision
    assert (changed.face_min_px, changed.enabled) == (40, False)
