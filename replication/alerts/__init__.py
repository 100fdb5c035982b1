"""Alerts (issue 14): people are told when something goes wrong, by email and Telegram.

The engine never calls this package (an import-linter contract says so). A django-q2 task
(`tasks.alerts_scan_task`) reads the audit log after its cursor and a few state tables
(`detect`), opens one alert per kind and account per window (`services`), and queues one
delivery task per recipient (`tasks.alert_deliver_task`), which calls a channel (`channels`).
"""
