"""Angel One (SmartAPI) adapter on the official `smartapi-python` SDK (docs/angel.md).

`brokers.angel.sdk` is the only module that imports the SDK; `client.AngelBroker` is the
BrokerClient, `session` the headless login (client code, PIN, TOTP), `scrip` the scrip master.
"""
