"""The paper exchange: a simulated broker persisted in the database (the embedded default).

- `models`: accounts (cash), instruments (lot, tick, freeze, last price), orders, trades, positions;
- `margin`: the pure margin model (its docstring is the documentation), `pricing`: demo premiums;
- `selectors`: reads and funds; `services`: writes (accounts, prices, orders), using `matching`
  (input checks, fills, resting orders), `walk` (the random walk) and `seeding` (instrument dumps
  plus generated NIFTY / BANKNIFTY sets); `rows`: plain-SQL reads and writes for the hot path;
- `client.PaperBroker`: the `brokers.base.BrokerClient` implementation.
"""
