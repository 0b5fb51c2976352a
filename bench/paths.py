"""Where the benchmark finds the checkout and the shipped rules."""

from pathlib import Path

from app.defaults import shipped_rules_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RULES = shipped_rules_dir()
