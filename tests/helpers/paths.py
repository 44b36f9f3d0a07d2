"""Where things are, for every test: the repository root, the artifacts folder and the shipped ELS samples."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SAMPLES = ROOT / "examples" / "els-samples"
