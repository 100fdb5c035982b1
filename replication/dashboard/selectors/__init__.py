"""Reads for the staff dashboards: querysets with their relations loaded, and small presentation rows.

Dates the staff pick ("today", a day filter) are trading days in Asia/Kolkata; everything stored
and compared is aware UTC. One module per page, read in this order:

- `_common`: the trading day (`display_zone`, `trading_day`, `day_bounds`), the broker clients
- `overview`: engine state (ticks that did something), the master's funds, the children list
  (sizing capital, the day's order success and latency), accounts needing a login
- `log`: the replication log (allocations, child orders, slippage) and its CSV export
- `reconcile`: expected vs actual per child, allocations awaiting approval
- `children`: one child's detail (capital curve, broker positions, orders, events)
- `charts`: order success per child, latencies

Callers import from this package. The reads that call a broker look `broker_clients` up here at
call time, so replacing it on this package reaches them all.
"""

from replication.dashboard.selectors._common import (
    BPS,
    CURVE_POINTS_MAX,
    ZERO,
    broker_clients,
    day_bounds,
    display_zone,
    trading_day,
)
from replication.dashboard.selectors.charts import (
    ACCEPTED,
    LATENCY_SAMPLE_MAX,
    REFUSED,
    SuccessRow,
    latencies,
    success_by_child,
)
from replication.dashboard.selectors.children import (
    BrokerPositions,
    broker_positions,
    capital_curve,
    child_events,
    child_get,
    child_orders,
)
from replication.dashboard.selectors.log import (
    CSV_HEADER,
    ChildOrderRow,
    LogEntry,
    LogFilters,
    LogGroup,
    allocation_log,
    log_csv_rows,
    log_entry,
    log_groups,
    master_average_price,
    slippage,
)
from replication.dashboard.selectors.overview import (
    BUSY_TICKS_WINDOW,
    FUNDS_STALE_AFTER,
    RECENT_TICKS,
    EngineState,
    FundsState,
    MasterFunds,
    OrderStats,
    accounts_needing_login,
    broker_order_stats,
    child_list,
    child_order_stats,
    child_status_counts,
    engine_state,
    master_funds,
    sizing_capital,
)
from replication.dashboard.selectors.reconcile import (
    DriftRow,
    awaiting_approval,
    drift_rows,
    lot_sizes,
    reconcile_children,
)

__all__ = [
    "ACCEPTED",
    "BPS",
    "BUSY_TICKS_WINDOW",
    "CSV_HEADER",
    "CURVE_POINTS_MAX",
    "FUNDS_STALE_AFTER",
    "LATENCY_SAMPLE_MAX",
    "RECENT_TICKS",
    "REFUSED",
    "ZERO",
    "BrokerPositions",
    "ChildOrderRow",
    "DriftRow",
    "EngineState",
    "FundsState",
    "LogEntry",
    "LogFilters",
    "LogGroup",
    "MasterFunds",
    "OrderStats",
    "SuccessRow",
    "accounts_needing_login",
    "allocation_log",
    "awaiting_approval",
    "broker_clients",
    "broker_order_stats",
    "broker_positions",
    "capital_curve",
    "child_events",
    "child_get",
    "child_list",
    "child_order_stats",
    "child_orders",
    "child_status_counts",
    "day_bounds",
    "display_zone",
    "drift_rows",
    "engine_state",
    "latencies",
    "log_csv_rows",
    "log_entry",
    "log_groups",
    "lot_sizes",
    "master_average_price",
    "master_funds",
    "reconcile_children",
    "sizing_capital",
    "slippage",
    "success_by_child",
    "trading_day",
]
