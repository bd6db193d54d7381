"""The cloud's services: the flows that run the core over the adapters, one file a flow."""
