"""``DbIOManager`` that works with multi-partitions: dynamic dimensions and inputs spanning several key ranges.

Two gaps of Dagster 1.13's ``DbIOManager._get_table_slice`` (see ../shared/docs/dagster-notes.md §2.3):

1. It resolves dynamic partition keys without a partition-loading context and fails with "The instance is not
   available to load partitions". Wrapping both entry points in the instance's context fixes it.
2. It reads a multi-partitioned upstream through ``asset_partition_key_range``, which refuses a set of keys that
   is not one range: ``gex_levels`` over a range of dates loads every expiration slot of those dates, which Dagster
   holds as one key range per slot. Such an input is read here as the rectangle it is (the dates' time window ×
   the slot keys), after checking that the keys are exactly that rectangle.

``DbIOManager`` is private API, hence the pinned Dagster minor version.
"""

from __future__ import annotations

from typing import cast

from dagster import InputContext, MultiPartitionKey, MultiPartitionsDefinition, OutputContext
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.partitions.definition import TimeWindowPartitionsDefinition
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import DbIOManager, TablePartitionDimension, TableSlice

from zerogex_pipeline.storage.table_slices import StorageError


class PartitionedDbIOManager(DbIOManager):
    """``DbIOManager`` with the dynamic-partition loading context set, and rectangular multi-range inputs."""

    def handle_output(self, context: OutputContext, obj: object) -> None:
        with partition_loading_context(dynamic_partitions_store=context.step_context.instance):
            super().handle_output(context, obj)

    def load_input(self, context: InputContext) -> object:
        with partition_loading_context(dynamic_partitions_store=context.instance):
            return super().load_input(context)

    def _get_table_slice(self, context: OutputContext | InputContext, output_context: OutputContext) -> TableSlice:
        if not isinstance(context, InputContext) or not _spans_several_ranges(context):
            return super()._get_table_slice(context, output_context)
        # The same table and schema as any other read of this asset (one partition's slice), with the rectangle's
        # dimensions instead of the single range's.
        keys = [cast("MultiPartitionKey", k) for k in context.asset_partition_keys]
        partitions_def = cast("MultiPartitionsDefinition", context.asset_partitions_def)
        metadata = output_context.definition_metadata or {}
        exprs = cast("dict[str, str]", metadata.get("partition_expr") or {})
        dimensions: list[TablePartitionDimension] = []
        size = 1
        for dim in partitions_def.partitions_defs:
            values = sorted({k.keys_by_dimension[dim.name] for k in keys})
            size *= len(values)
            if dim.name not in exprs:
                raise StorageError(f"{context.asset_key.to_user_string()}: no partition_expr for dimension {dim.name!r}")
            partitions: TimeWindow | list[str]
            if isinstance(dim.partitions_def, TimeWindowPartitionsDefinition):
                all_keys = dim.partitions_def.get_partition_keys()
                first, last = all_keys.index(values[0]), all_keys.index(values[-1])
                if last - first + 1 != len(values):
                    raise StorageError(f"{context.asset_key.to_user_string()}: the {dim.name} keys read are not "
                                       f"consecutive ({values[0]} .. {values[-1]})")
                partitions = TimeWindow(dim.partitions_def.time_window_for_partition_key(values[0]).start,
                                        dim.partitions_def.time_window_for_partition_key(values[-1]).end)
            else:
                partitions = values
            dimensions.append(TablePartitionDimension(partition_expr=exprs[dim.name], partitions=partitions))
        if size != len(set(keys)):
            raise StorageError(f"{context.asset_key.to_user_string()}: the {len(keys)} partitions read are not every "
                               "combination of their dimensions' keys; read them in separate ranges")
        path = context.asset_key.path
        schema = str(metadata.get("schema") or self._schema or (path[-2] if len(path) > 1 else "public"))
        return TableSlice(table=path[-1], schema=schema, database=self._database, partition_dimensions=dimensions,
                          columns=(context.definition_metadata or {}).get("columns"))


def _spans_several_ranges(context: InputContext) -> bool:
    """True for an input of several key ranges of a multi-partitioned asset (``asset_partition_key_range`` fails)."""
    if not context.has_asset_partitions or not isinstance(context.asset_partitions_def, MultiPartitionsDefinition):
        return False
    subset = context._asset_partitions_subset  # private: what asset_partition_key_range itself reads
    if subset is None:
        return False
    return len(subset.get_partition_key_ranges(context.asset_partitions_def)) > 1
