"""Tests of embedkit.audit."""
