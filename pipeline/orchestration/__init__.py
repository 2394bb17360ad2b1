"""The orchestrator: claims queued pipelines and runs their steps on workers through the RPC client."""
