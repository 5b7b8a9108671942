"""Thin Dagster definitions by domain: partitions, resources, and per-underlying asset factories."""
