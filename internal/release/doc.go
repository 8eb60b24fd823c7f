// Package release holds no code: its tests keep the release artefacts in
// step. The Makefile and the Dockerfile build the binary with the same
// flags and stamp the same version variable, which must exist; the image
// name is the one the manifests deploy; the prod overlay pins a version the
// CHANGELOG lists; and the LICENSE is there.
package release
