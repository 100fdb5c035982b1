"""The one send gate: intents in, broker orders out, outcomes written back (`Replicator`)."""
