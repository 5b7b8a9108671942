"""``DbIOManager`` that works with multi-partitions that have a dynamic dimension.

Dagster 1.13's ``DbIOManager._get_table_slice`` resolves dynamic partition keys without a
partition-loading context and fails with "The instance is not available to load partitions"
(see ../shared/docs/dagster-notes.md §2.3). Wrapping both entry points in the instance's context fixes it.
``DbIOManager`` is private API, hence the pinned Dagster minor version.
"""

from __future__ import annotations

from dagster import InputContext, OutputContext
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.db_io_manager import DbIOManager


class PartitionedDbIOManager(DbIOManager):
    """``DbIOManager`` with the dynamic-partition loading context set for writes and reads."""

    def handle_output(self, context: OutputContext, obj: object) -> None:
        with partition_loading_context(dynamic_partitions_store=context.step_context.instance):
            super().handle_output(context, obj)

    def load_input(self, context: InputContext) -> object:
        with partition_loading_context(dynamic_partitions_store=context.instance):
            return super().load_input(context)
