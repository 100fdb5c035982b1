"""An Angel One SmartAPI compatible HTTP server in front of the paper exchange (`manage.py angel_sim`).

The real smartapi-python SDK (and so `brokers.angel.client.AngelBroker`) talks to it as if it were
`https://apiconnect.angelone.in`: the same routes, the `{status, message, errorcode, data}`
envelope (HTTP 200 even for refusals), token errors as `{success: false, errorCode: "AG8001"}`,
the headless login with client code, PIN and TOTP, the scrip master at
`/OpenAPI_File/files/OpenAPIScripMaster.json`, and Angel's rate limits (order writes 9/s, 500/min,
1,000/h per client code, answered 403 in plain text; the order book once a second).

- `auth`: clients (client code, PIN, TOTP secret, api key) and sessions (JWT -> client code);
- `payloads`: paper rows as Angel JSON (pure functions);
- `routes`: one handler per route and the route table, with the `/_sim/...` admin routes;
- `server`: `AngelSim` (state, faults, limits, dispatch) and the threaded HTTP server.

Faults are lab.kite_sim's switches (latency, accept-then-time-out, 5xx after accept, rate limit,
expire the token now or on the next order write, late book); `login_refused` makes logins fail.
The paper account behind a client code has the same id (the simulator does not open accounts).
"""
