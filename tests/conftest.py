"""Shared fixtures. The real-PACS rig (Orthanc on free loopback ports) lives in tests/pacs.py."""
import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "test-only-secret")

pytest_plugins = ["tests.fixtures_common"]
