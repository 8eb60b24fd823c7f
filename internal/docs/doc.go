// Package docs holds the tests that keep the Markdown documentation in step
// with the code: every yaml field of the config structs appears in
// docs/configuration.md, every metric the code registers appears in
// docs/operations.md (and every metric listed there exists), and every
// relative link in a *.md file resolves to an existing file and heading.
// It has no code of its own.
//
// Import rules: the tests read files and parse Go source with go/ast; they
// import none of the project's packages (internal/layering: internal
// packages sit below the domain packages).
package docs
