"""Tests of agad-stream; shared helpers are in tests.support, fixtures in conftest."""
