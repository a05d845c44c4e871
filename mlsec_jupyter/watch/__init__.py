"""Watching cells: what a cell intends (AST), what it changed (namespace diff), and the artifacts."""
