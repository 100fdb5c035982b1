"""An Alice Blue (Ant-A3 `/open-api/od/v1/`) compatible HTTP server in front of the paper exchange
(`manage.py alice_sim`).

The real Ant-A3 TradeHub SDK (and so `brokers.alice.client.AliceBroker`) talks to it as if it were
`https://a3.aliceblueonline.com/`: the same routes, the `{status, message, result}` envelope,
refusals as `{status: "Not_ok", message: "EC…"}`, the vendor login (`checkSum` =
SHA-256(userId + authCode + apiSecret) -> `userSession`, refusals as `{stat, emsg}`), `/limits`,
the V2 contract master (`/restpy/static/contract_master/V2/<EXCH>.csv`), the order feed token
(`createWsToken`) and the order feed itself on a loopback WebSocket (`ws`), and SEBI's 10 order
writes a second per client (HTTP 429).

- `auth`: clients (user id, app code, api secret), auth codes and sessions;
- `payloads`: paper rows as Alice Blue JSON / CSV (pure functions);
- `routes`: one handler per route and the route table, with the `/_sim/...` admin routes;
- `server`: `AliceSim` (state, faults, limits, dispatch) and the threaded HTTP server;
- `ws`: the order feed WebSocket.

Faults are lab.kite_sim's switches (latency, accept-then-time-out, 5xx after accept, rate limit,
expire the session now or on the next order write, late book).
"""
