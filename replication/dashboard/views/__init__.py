"""Staff dashboard views (class-based, every one behind StaffRequiredMixin)."""

from replication.dashboard.views.base import StaffRequiredMixin
from replication.dashboard.views.children import ChildDetailView, ChildFlattenView
from replication.dashboard.views.log import LogCsvView, LogFragmentView, LogView
from replication.dashboard.views.overview import ControlView, OverviewFragmentView, OverviewView
from replication.dashboard.views.reconcile import (
    AllocationApproveView,
    AllocationRejectView,
    CorrectionView,
    ReconcileView,
)
from replication.dashboard.views.stats import ChartsView

__all__ = [
    "AllocationApproveView",
    "AllocationRejectView",
    "ChartsView",
    "ChildDetailView",
    "ChildFlattenView",
    "ControlView",
    "CorrectionView",
    "LogCsvView",
    "LogFragmentView",
    "LogView",
    "OverviewFragmentView",
    "OverviewView",
    "ReconcileView",
    "StaffRequiredMixin",
]
