"""The lab: tools for developing and measuring the engine, never part of the product.

The Kite simulator (`kite_sim/`, `manage.py kite_sim`), the in-memory broker (`memory`), the
fan-out benchmark (`bench/`, `manage.py bench_fanout`), the chaos soak (`soak/`, `manage.py soak`),
the scripted demo (`demo`, `manage.py demo`) and the throwaway database they run on (`scratch`).
Installed only where the settings say so (LAB_ENABLED: on with DEBUG and in the test settings);
nothing in pms, accounts, replication or brokers imports it (an import-linter contract).
"""
