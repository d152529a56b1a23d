"""Memory: Qdrant store (server URL or embedded path), embedders, chunking, retrieval."""
