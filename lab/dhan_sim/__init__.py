"""A DhanHQ v2 compatible server in front of the paper exchange (`manage.py dhan_sim`).

The real dhanhq SDK (and so `brokers.dhan.client.DhanBroker`) talks to it as if it were
`https://api.dhan.co/v2` and `https://auth.dhan.co`: the same routes, bare JSON bodies on success,
`{errorType, errorCode: "DH-9xx", errorMessage}` with an HTTP error status on refusal, the PIN +
TOTP login (`POST /app/generateAccessToken`), the compact security-id master at
`/api-data/api-scrip-master.csv`, Dhan's order-write limits (10/s, 250/min, 1,000/h, 7,000/day
per client, DH-904) and its order-update WebSocket (`LoginReq` MsgCode 42, `order_alert`
messages), served as ws:// on a second loopback port.

- `auth`: clients (client id, PIN, TOTP secret, api key) and 24-hour access tokens;
- `routes`: paper rows as Dhan JSON and one handler per route, with the `/_sim/...` admin routes;
- `server`: `DhanSim` (state, faults, limits, dispatch), the threaded HTTP server and the socket.

Faults are lab.kite_sim's switches (latency, accept-then-time-out, 5xx after accept, rate limit,
expire the token now or on the next order write, late book); `login_refused` makes logins fail.
The paper account behind a client id has the same id.
"""
