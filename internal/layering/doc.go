// Package layering holds the test that enforces the import rules between
// the project's packages (see STYLE: domain core, adapters at the edge).
// It has no code of its own.
package layering
