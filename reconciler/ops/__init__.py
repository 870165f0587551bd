"""Running the system: ``up``, ``watch``, ``doctor``, worker discovery and the
lifeline that ends children with their parent (docs/architecture.md)."""
