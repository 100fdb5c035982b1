"""A Kite Connect v3 compatible HTTP server in front of the paper exchange (`manage.py kite_sim`).

The real kiteconnect SDK (and so `brokers.kite.client.KiteBroker`) can talk to it as if it were
`https://api.kite.trade`: same routes, envelopes, error types, token auth and order rate limit
(kite/API.md §2-§14). Tests switch faults on to exercise the engine's unhappy paths.

- `auth`: in-memory apps, request tokens and access-token sessions (token -> paper user id);
- `faults`: per-account and global fault switches, and the per-account order-write limiter;
- `payloads`: paper rows as Kite JSON / CSV (pure functions); `selectors`: the reads behind them;
- `wire`: Request, Response, KiteError and Call, independent of any server;
- `routes`: one handler per Kite route and the route table; `admin_routes`: `/_sim/...` and the
  stand-in login page `/connect/login`;
- `server`: `KiteSim` (state + dispatch) and the threaded HTTP server (`start`, `RunningSim`).

Limits of the imitation: only the order-write limit (10/s, 400/min per account) is enforced, not
Kite's per-api_key limits on reads and quotes; sessions live in memory (a restart forgets them);
no partial fills, autoslice, iceberg or cover orders (the paper exchange has none).
"""
